"""Every failure numerai-predict can report, each with its exit code and advice.

The pipeline raises these; ``predict.main`` is the one place that turns them
into a message, an exit code and the reproduce-locally footer.
"""

from __future__ import annotations

from numerai_predict.numerai import CPUS, DEFAULT_DATASET, TIMEOUT_SECONDS


class PredictError(Exception):
    """A failure with a distinct exit code and one line of advice."""

    exit_code = 1
    advice = ""
    #: The model's own exceptions show their traceback: the bug is the user's.
    show_traceback = False
    #: Whether the reproduce-locally footer helps: not when the install itself lacks a part.
    reproducible = True
    #: The predictions CSV written before the failure (a failed upload keeps it), for --report.
    kept_csv: str | None = None

    def __init__(self, message: str, advice: str | None = None, details: str = ""):
        super().__init__(message)
        self.message = message
        if advice is not None:
            self.advice = advice
        self.details = details

    def one_line(self) -> str:
        """The message and its advice, on one line."""
        text = self.message.replace("\n", " ")
        return f"{text}. {self.advice}" if self.advice else text


class UsageError(PredictError):
    exit_code = 2
    advice = "Run with --help to see every flag."


class MissingExtraError(PredictError):
    """The package was installed without the extra a command needs (pip's base install is the doctor)."""

    exit_code = 3
    advice = "Install numerai-predict with the extra named above."
    reproducible = False


class ModelFetchError(PredictError):
    exit_code = 10
    advice = "Check that --model is an existing file or a valid, unexpired URL."


class PickleUnreadableError(PredictError):
    exit_code = 11
    advice = "Re-create the pickle (cloudpickle.dump or pandas.to_pickle) and upload it again."


class PickleVersionError(PredictError):
    exit_code = 12
    advice = "Pickle the model with the same Python minor version you choose on Numerai."
    #: The Python minors that could have made the pickle: the footer's environment.
    pythons: tuple[tuple[int, int], ...] = ()


class MissingModuleError(PredictError):
    exit_code = 13
    advice = "Use only packages this environment provides, or pickle your own code by value."


class UnsafePickleError(PredictError):
    exit_code = 16
    advice = ("Only run pickles from authors you trust; `predict.py --check --model PATH` lists every call it "
              "would make while loading. A legitimate call the doctor does not know goes into "
              "numerai_predict/allowlist.py with its reason; --allow-unsafe loads it anyway")


class NotCallableError(PredictError):
    exit_code = 14
    advice = "Pickle a function or callable object taking (live_features) or (live_features, live_benchmark_models)."


class ArityError(PredictError):
    exit_code = 15
    advice = "The model must take 1 argument (live_features) or 2 (live_features, live_benchmark_models)."


class DatasetMissingError(PredictError):
    exit_code = 20
    advice = f"Pass an existing local file, or a Numerai dataset name such as {DEFAULT_DATASET}."


class DataFetchError(PredictError):
    exit_code = 21
    advice = "Check the dataset name (`numerapi list-datasets` lists them) and your network connection, then retry."


class DataUnreadableError(PredictError):
    exit_code = 22
    advice = "The dataset must be a Parquet file as Numerai publishes it."


class ModelRaisedError(PredictError):
    exit_code = 30
    advice = "Your model raised an exception: the traceback above points at your code."
    show_traceback = True


class ModelCrashedError(PredictError):
    exit_code = 31
    advice = (
        "A crash like this usually means the pickle was made with another Python "
        "or numpy/pandas/cloudpickle version: match this environment's versions"
    )


class ModelTimeoutError(PredictError):
    exit_code = 32
    advice = (f"Numerai stops a model after {TIMEOUT_SECONDS / 60:g} minutes on {CPUS} CPU: make it faster, "
              "or check for a loop that never ends.")


class ModelMemoryError(PredictError):
    exit_code = 33
    advice = ("Numerai gives a model 4 GB: use less memory (smaller dtypes, predict in chunks), "
              "or raise --max-memory to test.")


class InvalidPredictionsError(PredictError):
    """Base of every check on what the model returned; never written or uploaded."""

    exit_code = 40


class PredictionsNoneError(InvalidPredictionsError):
    exit_code = 40
    advice = "Make sure your function ends with `return predictions`."


class PredictionsTypeError(InvalidPredictionsError):
    exit_code = 41
    advice = "Return a pandas DataFrame indexed like live_features with one 'prediction' column."


class PredictionsEmptyError(InvalidPredictionsError):
    exit_code = 42
    advice = "Return one prediction per row of live_features."


class PredictionColumnError(InvalidPredictionsError):
    exit_code = 43
    advice = "Return exactly one numeric column, preferably named 'prediction'."


class PredictionsNaNError(InvalidPredictionsError):
    exit_code = 44
    advice = "Fill or fix the rows that produce NaN (e.g. missing features) before returning."


class PredictionsInfError(InvalidPredictionsError):
    exit_code = 45
    advice = "Clip or fix the rows that produce infinite values before returning."


class PredictionsRangeError(InvalidPredictionsError):
    exit_code = 46
    advice = "Scale predictions into [0, 1], e.g. with .rank(pct=True)."


class PredictionsIndexError(InvalidPredictionsError):
    exit_code = 47
    advice = "Keep live_features.index (the live ids) as the index of your predictions."


class PredictionsConstantError(InvalidPredictionsError):
    exit_code = 48
    advice = ("Numerai refuses predictions without spread (standard deviation 0): "
              "return a score that differs between rows, e.g. a model's output ranked with .rank(pct=True).")


class WriteError(PredictError):
    exit_code = 50
    advice = "Make sure --output_dir exists, is writable and has free space."


class UploadRejectedError(PredictError):
    exit_code = 60
    advice = "The upload URL was refused (often an expired presigned POST): request a new one. The CSV was kept."


class UploadFailedError(PredictError):
    exit_code = 61
    advice = "The upload kept failing after retries; the CSV was kept and can be uploaded again."


def all_errors() -> list[type[PredictError]]:
    """Every concrete error class, for the exit-code tables (README, docs/running.md) and the sandbox protocol."""
    found, todo = [], [PredictError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


#: What the model's process may report: outcomes of the model itself (its pickle, its code, its
#: output). Never a runner, data or upload error: those the runner alone can know.
MODEL_EXIT_CODES = frozenset({11, 12, 13, 14, 15, 30, 31, *range(40, 49)})


def error_from_name(name: str, message: str, advice: str | None = None, details: str = "",
                    data_too: bool = False) -> PredictError:
    """Rebuild an error reported by the sandboxed child process (sent as JSON; untrusted: only
    model-level errors are taken as such, and the live data's before the model loaded: ``data_too``)."""
    allowed = MODEL_EXIT_CODES | ({DataUnreadableError.exit_code} if data_too else set())
    for cls in all_errors():
        if cls.__name__ == name and cls.exit_code in allowed and cls is not PredictError:
            return cls(message, advice=advice, details=details)
    return ModelCrashedError(f"the model process reported a failure it cannot have: {name}: {message}",
                             details=details)
