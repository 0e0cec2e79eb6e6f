"""A round: many models, one data download, each model in the environment its pickle needs.

``python -m numerai_predict.round --manifest MANIFEST.csv`` (pixi task ``round``) reads a
manifest (``id,model,post_url,post_data,environment``; only ``id`` and ``model``
required), downloads the live data and benchmarks once (numerai_predict.data, its
retry policy) into ``<output_dir>/.round-data/`` (read-only), picks each model's
environment (the manifest's, or the pickle doctor's verdict) and runs every model
through predict.py itself, with the environment's interpreter (or its image,
``--use-images``), in a folder of its own, ``<output_dir>/<id>/``. One model's failure,
crash or timeout is that model's row in the report, never another model's problem.

Backends: local (default; a thread per worker, each model a predict.py process pinned
to a CPU of its own; workers = min(--workers or CPUs, available memory / --max-memory)),
or Ray (``--ray ADDRESS``): each model a Ray task of ``num_cpus=1, memory=--max-memory``;
Ray retries system failures (a node lost, ``--retries``), never model failures (a task
returns the model's result, it does not raise it). The data goes to the nodes through
Ray's object store, written once per node.

Resume: every model's outcome is kept in ``<id>/round-state.json`` (atomically) and
predict.py's own ``<id>/report.json``; a re-run of the same round skips models already
delivered (CSV written and, with a post_url, uploaded: predict.py's exit 0). A model's
folder is locked (flock) while its predict.py runs, so a re-run after the driver was
killed waits for the orphaned predict.py instead of running (and uploading) it twice.

The round's own exit codes (a model's outcome never changes them):

    0   every model ran (or was skipped with its reason), whatever their outcomes
    2   usage: a bad flag
    3   the manifest is invalid (one line: file, line, what is wrong)
    4   the backend is unavailable (ray not installed, cluster unreachable, no docker)
    5   some models could not be run by the round itself (environment not installed
        here, a task lost beyond its retries); their rows say why
    6   another round holds this output folder
    20/21/22/50  the data could not be had, or the output folder not written: as predict.py
    130 interrupted
"""
