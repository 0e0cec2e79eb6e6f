"""python -m numerai_predict.round: the round's one main (driver.py)."""

import sys

from numerai_predict.round.driver import main

sys.exit(main())
