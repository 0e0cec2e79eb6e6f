#!/usr/bin/env python3
"""numerai-predict: run a pickled Numerai model on live data and deliver its predictions.

The repository's and the images' entry point; the runner itself is numerai_predict/runner.py
(installed as the ``numerai-predict`` command).
"""

import sys

from numerai_predict.runner import main

if __name__ == "__main__":
    sys.exit(main())
