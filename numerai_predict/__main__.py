"""python -m numerai_predict: the runner, as predict.py and the numerai-predict command."""

import sys

from numerai_predict.runner import main

sys.exit(main())
