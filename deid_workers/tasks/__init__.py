"""Celery tasks, one module per task, and the glue they share.

Tasks are thin glue: they take a run id and a batch number (never paths or header values),
fetch the rest from the store, call :mod:`deid_workers.files.steps` per file and write the
outcomes back. Their return values are counts only, so nothing Flower or the result backend
shows can carry PHI.

    context.py    the run as a worker knows it (cached per process), refused or not
    guard.py      a batch's starts counted, poison files quarantined
    tally.py      what a batch counts and records, committed in one round trip
    dispatch.py   every task sent by name
    limits.py     a batch past its time limit is started again, like a crash
    liveness.py   a dead worker's batches handed back within seconds
    compat.py     the one place that reaches into Celery's and kombu's internals
    faults.py     crashes and hangs on purpose, for the reliability tests
    get.py inspect.py put.py clean.py finalize.py load.py   one module per task
"""
