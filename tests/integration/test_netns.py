"""The cluster across hosts: Redis, two workers and the producer each in a network namespace of
their own, joined to Redis by veth pairs (:mod:`benchmarks.netns`), so every Redis call
crosses a real interface. Default settings throughout (liveness TTL 20 s, visibility timeout
an hour, time limit 30 minutes): what an operator's cluster runs.

- a whole worker host dies mid-run (every process of it, kill -9) with the run sent by
  ``--no-wait`` from the producer's own host: its batches go to the other worker within a
  minute, with no producer watching; a late redelivery of them changes nothing;
- a worker host is cut off from Redis for 30 s (its link down, then up): the run completes,
  each file once, and the cut-off worker comes back by itself.

The test process reads Redis through its unix socket (not namespaced), never through a link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from integration_procs import ROOT, SECRET, counters, latest_run, placed, wait_for

from benchmarks.netns import NetLab, redis_on, unavailable
from deid_workers.app import QUEUES
from deid_workers.dicom.reader import read_dataset
from deid_workers.ids.read import load_ids
from deid_workers.synth import write_study_tree
from deid_workers.tasks.compat import OWNER_KEY

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(unavailable()), reason=f"{unavailable()}")]

PATIENTS, IMAGES = 10, 100  # 1,000 files


class Cluster:
    """Redis on host ``redis``; workers ``w1``, ``w2`` and the producer ``p`` on hosts of their
    own, each with one link to Redis."""

    def __init__(self, lab: NetLab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.links = {name: lab.connect(name) for name in ("w1", "w2", "p")}
        self.sock = ""
        self.nodes: dict[str, str] = {}

    def env(self, host: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DEID_BROKER_URL=f"redis://{self.links[host].hub_address}:6379/0",
                   DEID_SECRET=SECRET, XDG_CONFIG_HOME=str(self.tmp / "xdg"),
                   DEID_INPUT_ROOTS=str(self.tmp.resolve()),
                   DEID_OUTPUT_ROOTS=str(self.tmp.resolve()),
                   PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
        for name in ("MESSAGELEVEL", "DEID_VISIBILITY_TIMEOUT", "DEID_TASK_TIME_LIMIT",
                     "DEID_LIVENESS_TTL", "DEID_MAX_RETRIES"):
            env.pop(name, None)
        return env

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.sock, decode_responses=True)

    def start_worker(self, host: str) -> None:
        node = f"{host}@{host}-{os.getpid()}"
        self.nodes[host] = node
        self.lab.hosts[host].popen(
            [sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker",
             "-Q", ",".join(QUEUES), "-n", node, "--concurrency", "1", "--loglevel", "INFO",
             "--logfile", str(self.tmp / f"{host}.log"), "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            env=self.env(host), cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def ping(self, host: str, timeout: float = 1.0) -> bool:
        """Whether the worker of ``host`` answers a Celery ping (through Redis)."""
        from deid_workers.app import app, configure
        from deid_workers.config import Settings

        configure(app, Settings(broker_url=f"redis+socket://{self.sock}"))
        return bool(app.control.ping(destination=[self.nodes[host]], timeout=timeout))

    def submit(self, *args: str) -> Submit:
        """``deid-submit`` on the producer's host."""
        return Submit(self, args)

    def log(self, host: str) -> str:
        path = self.tmp / f"{host}.log"
        return path.read_text() if path.exists() else ""


class Submit:
    """One ``deid-submit`` process on host ``p``, its output in files."""

    def __init__(self, cluster: Cluster, args: tuple[str, ...]) -> None:
        stem = cluster.tmp / f"submit-{time.monotonic_ns()}"
        self.out, self.err = Path(f"{stem}.out"), Path(f"{stem}.err")
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = cluster.lab.hosts["p"].popen(
                [sys.executable, "-m", "deid_workers", *args], env=cluster.env("p"), cwd=ROOT,
                stdout=out, stderr=err)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("deid-submit did not finish: "
                                 + self.err.read_text()[-3000:]) from None
        return code, self.out.read_text(), self.err.read_text()


@pytest.fixture
def cluster(tmp_path):
    with NetLab() as lab:
        c = Cluster(lab, tmp_path)
        with redis_on(lab.hub, str(tmp_path)) as sock:
            c.sock = sock
            for host in ("w1", "w2"):
                c.start_worker(host)
            for host in ("w1", "w2"):
                wait_for(lambda h=host: c.ping(h), 60, f"worker {host}", step=0.2)
            yield c


def _tree(tmp: Path) -> tuple[Path, list[str]]:
    root = tmp / "in"
    return root, write_study_tree(root, patients=PATIENTS, images=IMAGES, rows=4, cols=4)


def _check_exactly_once(out: Path, root: Path, paths: list[str], run_id: str) -> None:
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(placed(root, rel, SECRET) for rel in paths)
    assert found == expected  # one output per input, no temp file left
    for rel in expected:
        read_dataset(out / rel, headers_only=False)  # complete
    records = out.with_name(out.name + "-records")
    seen: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        assert len(keys) == len(set(keys)), "an entity or item appears twice in deid-ids.json"
        seen.extend(keys)
        return dict(items)

    with open(records / "deid-ids.json", encoding="utf-8") as fh:
        data = json.load(fh, object_pairs_hook=pairs)
    assert {e: len(items) for e, items in data.items()} == \
        {f"PID-{p:04d}-SENT": IMAGES for p in range(PATIENTS)}
    assert load_ids(records / "deid-ids.pkl") == data
    log = [json.loads(line)
           for line in (records / f"deid-run.{run_id}.jsonl").read_text().splitlines()]
    assert sorted(e["path"] for e in log) == sorted(paths)
    assert {e["outcome"] for e in log} == {"written"}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def _owned_by(client: redis.Redis, node: str) -> dict[str, str]:
    return {tag: owner for tag, owner in client.hgetall(OWNER_KEY).items()
            if owner.partition("#")[0] == node}


def _status(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """``deid-submit --status RUN_ID --json`` on the producer's host."""
    code, stdout, err = cluster.submit("--status", run_id, "--json").wait(60)
    assert code == 0, err
    return dict(json.loads(stdout)["runs"][0])


def test_a_dead_worker_host_hands_its_batches_on_within_a_minute(cluster, tmp_path):
    """Every process of host w1 killed mid-run; the run was sent with --no-wait, so only the
    workers can recover it. Then the dead worker's messages, delivered once more as the
    visibility timeout would an hour later, change nothing."""
    root, paths = _tree(tmp_path)
    out = tmp_path / "out"
    client = cluster.client()
    code, stdout, err = cluster.submit("--action", "all", "--input", str(root), "--outfolder",
                                       str(out), "--batch", "20", "--no-wait").wait(120)
    assert code == 0, err
    run_id = latest_run(client)
    assert run_id and run_id in stdout + err
    w1 = cluster.nodes["w1"]
    wait_for(lambda: counters(client, run_id).get("put:files", 0) >= 200, 120, "put progress")
    held = wait_for(lambda: _owned_by(client, w1), 30, "a put batch taken by w1", step=0.02)
    payloads = {tag: raw for tag in held if (raw := client.hget("unacked", tag))}
    killed = time.monotonic()
    cluster.lab.hosts["w1"].kill_all()
    assert not cluster.lab.hosts["w1"].pids()
    assert counters(client, run_id).get("put:files", 0) < len(paths), "the run ended first"
    wait_for(lambda: not _owned_by(client, w1), 90, "w1's batches handed back", step=0.2)
    handed_back = time.monotonic() - killed
    wait_for(lambda: client.hget(f"deid:run:{run_id}", "state") == '"finished"', 90,
             "the run to finish", step=0.2)
    finished = time.monotonic() - killed
    print(f"w1 killed: its batches back in their queues after {handed_back:.1f} s, "
          f"run finished {finished:.1f} s after the kill")
    assert handed_back < 45 and finished < 60
    assert f"worker {w1} is gone" in cluster.log("w2")
    status = _status(cluster, run_id)
    s = status["summary"]
    assert (s["files_found"], s["valid"], s["written"], s["failed"], s["poison"]) == \
        (1000, 1000, 1000, 0, 0)
    assert status["taken"] == [] and set(status["workers"]) == {w1, cluster.nodes["w2"]}
    _check_exactly_once(out, root, paths, run_id)

    before, counts = _mtimes(out), counters(client, run_id)
    def done(task_id: str) -> list[str]:
        return [x for x in cluster.log("w2").splitlines() if f"{task_id}] succeeded" in x]

    runs = {}
    for raw in payloads.values():  # as kombu's restore_visible would push them back
        payload, _exchange, queue = json.loads(raw)
        runs[payload["headers"]["id"]] = len(done(payload["headers"]["id"]))
        client.rpush(queue, json.dumps(payload))
    for task_id, n in runs.items():
        wait_for(lambda t=task_id, n=n: len(done(t)) > n, 60, "the late delivery")
        assert "'already_done': 1" in done(task_id)[-1]
    assert _mtimes(out) == before and counters(client, run_id) == counts


def test_b_a_worker_host_cut_off_for_30_s_rejoins_and_the_run_completes_once(cluster, tmp_path):
    """Host w1's link to Redis goes down for 30 s mid-run, longer than the liveness TTL: its
    batch is redone by w2 and its own start of it commits nothing; the run (waited for by
    deid-submit on the producer's own host) completes, each file once. w1 comes back by
    itself: it answers pings again and, alone, runs the next job."""
    root, paths = _tree(tmp_path)
    out = tmp_path / "out"
    client = cluster.client()
    submit = cluster.submit("--action", "all", "--input", str(root), "--outfolder", str(out),
                            "--batch", "20", "--json", "--quiet")
    run_id = wait_for(lambda: latest_run(client), 60, "the run")
    w1 = cluster.nodes["w1"]
    wait_for(lambda: counters(client, run_id).get("put:files", 0) >= 200, 120, "put progress")
    wait_for(lambda: _owned_by(client, w1), 30, "a put batch taken by w1", step=0.02)
    link = cluster.links["w1"]
    link.down()
    try:
        time.sleep(30)  # the outage itself
    finally:
        link.up()
    code, stdout, err = submit.wait(120)
    assert code == 0, err[-3000:]
    s = json.loads(stdout)
    assert (s["files_found"], s["valid"], s["written"], s["failed"], s["refused"]) == \
        (1000, 1000, 1000, 0, 0)
    _check_exactly_once(out, root, paths, run_id)
    assert counters(client, run_id)["put:files"] == 1000  # no batch counted twice

    wait_for(lambda: cluster.ping("w1"), 90, "w1 to answer again", step=0.5)
    wait_for(lambda: "no liveness refresh for" in cluster.log("w1"), 30, "w1 to notice")
    cluster.lab.hosts["w2"].kill_all()
    small = tmp_path / "small"
    write_study_tree(small, patients=2, images=10, rows=4, cols=4)
    code, stdout, err = cluster.submit("--action", "get", "--input", str(small), "--outfolder",
                                       str(tmp_path / "out2"), "--json", "--quiet").wait(90)
    assert code == 0, err[-3000:]
    assert json.loads(stdout)["valid"] == 20
