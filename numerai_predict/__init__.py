"""numerai-predict: run a Numerai participant's pickled model on live data."""
