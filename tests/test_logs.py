"""logs: deid's level names, the deid-style and JSON formatters, and the CLI's handler setup."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from deid_workers import logs

pytestmark = pytest.mark.usefixtures("cluster_key")


def _record(msg="run %s get batch %d", args=("r1", 3), level=logging.INFO, exc_info=None,
            **extra):
    rec = logging.LogRecord("deid_workers.tasks.get", level, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_time_level_logger_message():
    line = logs.JsonFormatter().format(_record())
    doc = json.loads(line)
    assert doc["message"] == "run r1 get batch 3" and doc["level"] == "INFO"
    assert doc["logger"] == "deid_workers.tasks.get" and doc["time"].endswith("+00:00")
    assert "task_id" not in doc and "\n" not in line


def test_json_takes_task_fields_from_the_record_or_celery_args():
    doc = json.loads(logs.JsonFormatter().format(_record(task_id="abc", task_name="deid.get")))
    assert (doc["task_id"], doc["task_name"]) == ("abc", "deid.get")
    # Celery's "Task %(name)s[%(id)s] succeeded ..." lines log a mapping of arguments.
    rec = _record("Task %(name)s[%(id)s] received", None)
    rec.args = {"name": "deid.put", "id": "xyz"}
    doc = json.loads(logs.JsonFormatter().format(rec))
    assert (doc["task_id"], doc["task_name"]) == ("xyz", "deid.put")
    doc = json.loads(logs.JsonFormatter().format(_record(task_id="???", task_name="???")))
    assert "task_id" not in doc


def test_json_inside_a_running_task_names_it():
    from deid_workers.app import app

    @app.task(name="deid.test_logs_probe", bind=True)
    def probe(self):
        return logs.JsonFormatter().format(_record())

    try:
        doc = json.loads(probe.apply(task_id="tid-1").get())
    finally:
        app.tasks.pop("deid.test_logs_probe", None)
    assert doc["task_id"] == "tid-1" and doc["task_name"] == "deid.test_logs_probe"


def test_json_exception_keeps_type_and_code_lines_never_the_message():
    value = "DOE" + "^JOHN"  # built, so the source line shown in the traceback lacks it
    try:
        raise ValueError(f"{value} is not a valid date")
    except ValueError:
        exc = sys.exc_info()
    doc = json.loads(logs.JsonFormatter().format(_record(level=logging.ERROR, exc_info=exc)))
    assert doc["exc_type"] == "ValueError" and "raise ValueError" in doc["traceback"]
    assert "DOE^JOHN" not in json.dumps(doc)


def test_use_json_swaps_every_real_handler():
    logger = logging.getLogger("deid_workers.test_use_json")
    stream = io.StringIO()
    handler, null = logging.StreamHandler(stream), logging.NullHandler()
    logger.handlers = [handler, null]
    logger.propagate = False
    try:
        logs.use_json(logger)
        logger.warning("run %s: skipping %s", "r9", "a/b.dcm")
    finally:
        logger.handlers = []
    assert json.loads(stream.getvalue())["message"] == "run r9: skipping a/b.dcm"
    assert isinstance(null.formatter, type(None))


@pytest.mark.parametrize("log_json", [False, True])
def test_setup_uses_deid_or_json_format_and_restores(log_json):
    stream = io.StringIO()
    pkg = logging.getLogger("deid_workers")
    before = (list(pkg.handlers), pkg.level, pkg.propagate)
    with logs.setup("DEBUG", log_json=log_json, stream=stream):
        logging.getLogger("deid_workers.cli").warning("a.dcm already exists")
    assert (list(pkg.handlers), pkg.level, pkg.propagate) == before
    text = stream.getvalue().strip()
    if log_json:
        assert json.loads(text)["level"] == "WARNING"
    else:
        assert text == "WARNING a.dcm already exists"


def test_cli_log_json_flag_makes_stderr_json(monkeypatch, capsys, tmp_path):
    from deid_workers import cli

    monkeypatch.delenv("DEID_LOG_JSON", raising=False)
    monkeypatch.setenv("DEID_BROKER_URL", "redis://127.0.0.1:1/0")
    assert cli.main(["--log-json", "--resume", "r1"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err.splitlines()
    # every line is JSON, the one-line error too (its message keeps the usual words)
    records = [json.loads(line) for line in err]
    assert records[-1]["level"] == "ERROR"
    assert records[-1]["message"].startswith("deid-submit: error: cannot reach Redis")


def test_worker_signal_applies_json_only_when_asked(monkeypatch):
    from deid_workers import app as app_module

    logger = logging.getLogger("deid_workers.test_signal")
    handler = logging.StreamHandler(io.StringIO())
    logger.handlers = [handler]
    try:
        monkeypatch.delenv("DEID_LOG_JSON", raising=False)
        app_module._worker_log_format(logger=logger)
        assert not isinstance(handler.formatter, logs.JsonFormatter)
        monkeypatch.setenv("DEID_LOG_JSON", "1")
        app_module._worker_log_format(logger=logger)
        assert isinstance(handler.formatter, logs.JsonFormatter)
    finally:
        logger.handlers = []


def _record_with(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("celery.app.trace", logging.WARNING, __file__, 1,
                                 "Task %s rejected", ("deid.get",), sys.exc_info())


def test_a_requeued_batch_is_logged_without_its_traceback():
    from celery.exceptions import Reject

    from deid_workers.app import _worker_log_format
    from deid_workers.logs import RequeueTracebackFilter

    _worker_log_format()  # the worker's logging signal installs the filter, once
    _worker_log_format()
    trace = logging.getLogger("celery.app.trace")
    assert sum(isinstance(f, RequeueTracebackFilter) for f in trace.filters) == 1
    requeued = _record_with(Reject("timed out", requeue=True))
    assert trace.filter(requeued) and requeued.exc_info is None
    assert requeued.getMessage() == "Task deid.get rejected"
    for kept in (Reject("bad message", requeue=False), ValueError("x")):
        record = _record_with(kept)
        assert trace.filter(record) and record.exc_info is not None


def test_pydicom_warnings_reach_worker_logs_without_the_values_they_quote():
    from deid_workers.app import _worker_log_format

    _worker_log_format()
    _worker_log_format()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    try:
        for name in ("pydicom", "py.warnings"):
            logger = logging.getLogger(name)
            assert sum(isinstance(f, logs.QuotedValueFilter) for f in logger.filters) == 1
            logger.addHandler(handler)
            logger.warning("Invalid value for VR %s: %r.", "DA", "19991399")
            logger.warning('Invalid value for VR PN: "DOE^JANE" in %s', "x")
            logger.removeHandler(handler)
    finally:
        for name in ("pydicom", "py.warnings"):
            logging.getLogger(name).removeHandler(handler)
    text = stream.getvalue()
    assert "19991399" not in text and "DOE" not in text
    assert text.count("Invalid value for VR DA: '<value withheld>'.") == 2
    assert "Invalid value for VR PN: '<value withheld>' in x" in text
