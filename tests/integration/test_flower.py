"""Flower against the real Redis and worker: task names, queues, states, and no PHI anywhere.

Flower is started before the jobs (it learns about tasks from events, not from Redis), with
basic auth from ``FLOWER_BASIC_AUTH`` as docker-compose gives it. The second test renders the
tasks page in headless Chromium, whose table is filled by JavaScript from ``/tasks/datatable``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from integration_procs import free_port, kill_group

from deid_workers.cli import main
from deid_workers.synth import phi_strings, write_study_tree

pytestmark = pytest.mark.integration

ROOT = str(Path(__file__).resolve().parents[2])
USER, PASSWORD = "ops", "flower-test-pass"
OCR = os.environ.get("DEID_REQUIRE_OCR") == "1" or all(
    importlib.util.find_spec(m) is not None for m in ("rapidocr", "onnxruntime"))
"""The ``all`` run reads its images by OCR (``--ocr all``) where the extra is installed (CI
requires it), so Flower shows ``deid.ocr`` and ``deid.clean`` tasks too."""
NAMES = {"deid.get", "deid.inspect", "deid.put", "deid.finalize"} | (
    {"deid.ocr", "deid.clean"} if OCR else set())


class Flower:
    def __init__(self, url: str) -> None:
        self.url = url
        self.auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def get(self, path: str, *, auth: bool = True) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path)
        if auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:200])
        return json.loads(body)


@pytest.fixture(scope="module")
def flower(worker_log, worker_env, tmp_path_factory):
    """A real Flower on a free localhost port, up (and seeing the worker) before any job."""
    port = free_port()
    env = dict(worker_env, FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}")
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "deid_workers.app", "flower",
             f"--port={port}", "--address=127.0.0.1", "--purge_offline_workers=300"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    client = Flower(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail("flower exited: " + log.read_text()[-2000:])
            try:
                status, body = client.get("/api/workers?refresh=1")
                if status == 200 and json.loads(body):
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("flower did not list the worker: " + log.read_text()[-2000:])
            time.sleep(0.3)
        yield client
    finally:
        kill_group(proc, signal.SIGTERM)


@pytest.fixture(scope="module")
def jobs(flower, worker_env, tmp_path_factory):
    """An ``all`` run and an ``inspect`` run while Flower watches; (run ids, PHI strings)."""
    root = tmp_path_factory.mktemp("flower-in") / "in"
    write_study_tree(root, patients=2, images=2, corrupt=1)
    out = tmp_path_factory.mktemp("flower-out")
    saved = {k: os.environ.get(k) for k in ("DEID_BROKER_URL", "DEID_SECRET", "XDG_CONFIG_HOME")}
    os.environ.update({k: worker_env[k] for k in saved})
    run_ids = []
    try:
        for action in ("all", "inspect"):
            before = set(_runs(worker_env))
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(["--action", action, "--quiet", "--batch", "2",
                             "--input", str(root), "--outfolder", str(out / action)]
                            + (["--ocr", "all"] if OCR and action == "all" else []))
            assert code == 0
            (run_id,) = set(_runs(worker_env)) - before
            run_ids.append(run_id)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    tasks = _wait_for_tasks(flower, run_ids)
    return run_ids, tasks, phi_strings(0) | phi_strings(1)


def _runs(env) -> list[str]:
    from deid_workers.run.client import redis_client
    from deid_workers.run.store import list_runs

    return list_runs(redis_client(env["DEID_BROKER_URL"]), limit=1000)


def _ours(tasks: dict, run_ids: list[str]) -> dict:
    return {tid: t for tid, t in tasks.items() if any(r in str(t.get("args")) for r in run_ids)}


def _wait_for_tasks(flower: Flower, run_ids: list[str], timeout: float = 15.0) -> dict:
    """Flower's tasks of our runs, once every one of them has reached SUCCESS."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = _ours(flower.json("/api/tasks"), run_ids)
        names = {t.get("name") for t in tasks.values()}
        if names >= NAMES and all(t.get("state") == "SUCCESS" for t in tasks.values()):
            return tasks
        if time.monotonic() > deadline:
            return tasks
        time.sleep(0.3)


def test_flower_api_lists_named_tasks_on_their_queues_without_phi(flower, jobs):
    run_ids, tasks, phi = jobs
    all_run, inspect_run = run_ids
    by_name: dict[str, list[dict]] = {}
    for t in tasks.values():
        by_name.setdefault(t["name"], []).append(t)
    assert set(by_name) == NAMES
    # 5 files in batches of 2: 3 batches per stage, one finalize per run; every task done,
    # with a run id and a batch number as its only arguments.
    assert len(by_name["deid.get"]) == len(by_name["deid.put"]) == 3
    assert len(by_name["deid.inspect"]) == 3 and len(by_name["deid.finalize"]) == 2
    for name, group in by_name.items():
        queue = name.split(".", 1)[1]
        for t in group:
            assert t["state"] == "SUCCESS", t
            assert t["routing_key"] == queue, t
            assert t["worker"], t
            args = t["args"].strip("()[]").split(",")
            assert args[0].strip(" '\"") in run_ids
            assert all(a.strip().isdigit() for a in args[1:] if a.strip()), t["args"]
            assert t["kwargs"] in ("{}", None), t
    # Task info by id, the workers API (with the queues each worker consumes), queue lengths.
    some_id = next(iter(tasks))
    assert flower.json(f"/api/task/info/{some_id}")["name"] in NAMES
    workers = flower.json("/api/workers?refresh=1")
    consumed = {q["name"] for w in workers.values() for q in w.get("active_queues", [])}
    assert consumed >= {"get", "inspect", "put", "finalize"}
    lengths = {q["name"]: q["messages"]
               for q in flower.json("/api/queues/length")["active_queues"]}
    assert set(lengths) >= {"get", "put"}
    # No PHI in anything Flower shows: the APIs, the pages and their data.
    pages = ["/api/tasks", "/api/workers", "/api/task/types", "/api/queues/length",
             "/tasks", "/workers", "/broker", "/metrics",
             "/tasks/datatable?draw=1&start=0&length=100&search%5Bvalue%5D="
             "&order%5B0%5D%5Bcolumn%5D=0&order%5B0%5D%5Bdir%5D=asc"]
    pages += [f"/task/{tid}" for tid in tasks] + [f"/api/task/info/{tid}" for tid in tasks]
    for page in pages:
        status, body = flower.get(page)
        assert status == 200, (page, status)
        for value in phi:
            assert value not in body, (page, value)


def test_flower_requires_basic_auth(flower):
    for page in ("/api/tasks", "/tasks", "/api/workers"):
        assert flower.get(page, auth=False)[0] == 401
    assert flower.get("/healthcheck", auth=False)[0] == 200


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_flower_tasks_page_renders_task_names_in_chromium(flower, jobs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver; "
                    ".ci/run installs it)")
    run_ids, tasks, phi = jobs
    status, html = flower.get("/tasks")
    assert status == 200 and not any(tid in html for tid in tasks)  # rows come from JS
    url = flower.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/tasks"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    dom = proc.stdout
    assert "<table" in dom, (proc.returncode, proc.stderr[-2000:])
    for name in NAMES:
        assert name in dom, name
    assert any(tid in dom for tid in tasks)
    for value in phi:
        assert value not in dom
