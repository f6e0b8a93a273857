"""Issue 5 on real processes: worker crashes, Redis restarts, resume, poison files.

Each test runs its own redis-server, its own workers and (where it must be killed) its own
deid-submit process, so it can crash them without disturbing the session's cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pydicom
import pytest
from integration_procs import (
    SECRET,
    Producer,
    RedisServer,
    Worker,
    counters,
    env_for,
    latest_run,
    placed,
    wait_for,
)

from deid_workers.dicom.reader import read_dataset
from deid_workers.ids.read import load_ids
from deid_workers.reasons import CORRUPT
from deid_workers.synth import make_dataset, write_study_tree
from deid_workers.tasks.guard import poison_reason

pytestmark = pytest.mark.integration

BIG = (20, 100)  # patients x images: 2000 files
SMALL = (5, 40)  # 200 files


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two study trees written once: 2000 tiny files and 200 (copied per test)."""
    base = tmp_path_factory.mktemp("corpora")
    out = {}
    for name, (patients, images) in (("big", BIG), ("small", SMALL)):
        paths = write_study_tree(base / name, patients=patients, images=images, rows=4, cols=4)
        out[name] = (base / name, paths)
    return out


def _copy(corpora, name: str, dest: Path) -> tuple[Path, list[str]]:
    src, paths = corpora[name]
    shutil.copytree(src, dest)
    return dest, list(paths)


def _check_outputs(out: Path, paths: list[str], root: Path) -> None:
    """Every valid input has exactly one output (where the mirror layout puts it), complete
    and readable; nothing else is there (identifiers and run logs are in the records folder)."""
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(placed(root, rel, SECRET) for rel in paths)
    assert found == expected  # no temp file left, no extra file
    for rel in expected:
        read_dataset(out / rel, headers_only=False)  # complete: InputError if cut short


def _check_ids_once(out: Path, paths_by_patient: dict[str, int]) -> None:
    pairs_seen: list[str] = []

    def hook(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), "a key appears twice in deid-ids.json"
        pairs_seen.extend(keys)
        return dict(pairs)

    records = out.with_name(out.name + "-records")
    with open(records / "deid-ids.json", encoding="utf-8") as fh:
        data = json.load(fh, object_pairs_hook=hook)
    assert {e: len(items) for e, items in data.items()} == paths_by_patient
    assert load_ids(records / "deid-ids.pkl") == data


def _per_patient(patients: int, images: int) -> dict[str, int]:
    return {f"PID-{p:04d}-SENT": images for p in range(patients)}


def test_kill_pool_process_then_whole_worker_mid_all(corpora, tmp_path):
    """A pool process killed (its batch is requeued at once), then the whole worker (main
    process and children, as when its node dies) and a replacement started, all with the
    default visibility timeout (an hour) and liveness TTL: the dead worker's batch is back in
    its queue within a minute (tasks/liveness.py), not an hour."""
    root, paths = _copy(corpora, "big", tmp_path / "in")
    out = tmp_path / "out"
    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    env = env_for(server.url, tmp_path, DEID_MAX_RETRIES="5", DEID_VISIBILITY_TIMEOUT="3600",
                  DEID_TASK_TIME_LIMIT="1800")
    first = Worker(env, tmp_path / "w1.log", "crash1")
    try:
        producer = Producer(env, tmp_path, "--action", "all", "--input", str(root),
                            "--outfolder", str(out), "--batch", "20", "--json", "--quiet")
        run_id = wait_for(lambda: latest_run(client), 60, "the run")
        wait_for(lambda: counters(client, run_id).get("get:files", 0) >= 300, 90, "get progress")
        victim = wait_for(first.pool, 10, "a pool process")[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: counters(client, run_id).get("put:files", 0) >= 300, 120,
                 "put progress")
        first.kill()  # main process and children at once
        killed = time.monotonic()
        killed_at = counters(client, run_id).get("put:files", 0)
        assert killed_at < len(paths), "the run ended before the worker was killed"
        second = Worker(env, tmp_path / "w2.log", "crash2")
        try:
            code, stdout, err = producer.wait(timeout=150)
            after_kill = time.monotonic() - killed
        finally:
            second.stop()
    finally:
        first.kill()
        server.kill()
    assert code == 0, err[-3000:]
    assert after_kill < 60, f"the run ended {after_kill:.0f} s after its worker died"
    s = json.loads(stdout)
    assert (s["files_found"], s["valid"], s["written"], s["failed"], s["poison"]) == \
        (2000, 2000, 2000, 0, 0)
    _check_outputs(out, paths, root)
    _check_ids_once(out, _per_patient(*BIG))


def _restart_redis_mid_all(tmp_path, root, out, *, aof, after, timeout, output, **env_extra):
    """Kill Redis (SIGKILL) once ``after`` files are through get, start it again, and let the
    run go on; returns the run id, exit code, stdout and stderr of deid-submit."""
    server = RedisServer(tmp_path, aof=aof)
    client = server.client()
    env = env_for(server.url, tmp_path, **env_extra)
    worker = Worker(env, tmp_path / "w.log", "aof" if aof else "noaof")
    try:
        producer = Producer(env, tmp_path, "--action", "all", "--input", str(root),
                            "--outfolder", str(out), "--batch", "10", output)
        run_id = wait_for(lambda: latest_run(client), 60, "the run")
        wait_for(lambda: counters(client, run_id).get("get:files", 0) >= after, 60, "progress")
        server.kill()
        time.sleep(1.5)
        server.start()
        code, stdout, err = producer.wait(timeout=timeout)
    finally:
        worker.kill()
        server.kill()
    return run_id, code, stdout, err


def test_redis_restart_with_aof_loses_nothing(corpora, tmp_path):
    """With the default visibility timeout (an hour): the batches the worker had taken when
    its connection broke (taken ahead, or running and unable to ack) go back to their queues
    once its old liveness lapses (tasks/liveness.broker_lost), not an hour later."""
    root, paths = _copy(corpora, "small", tmp_path / "in")
    out = tmp_path / "out"
    _, code, stdout, err = _restart_redis_mid_all(
        tmp_path, root, out, aof=True, after=40, timeout=120, output="--json",
        DEID_VISIBILITY_TIMEOUT="3600", DEID_TASK_TIME_LIMIT="1800", DEID_LIVENESS_TTL="3")
    assert code == 0, err[-3000:]
    assert "lost the connection to Redis" in err and "Traceback" not in err
    s = json.loads(stdout)
    assert (s["files_found"], s["written"], s["failed"]) == (200, 200, 0)
    _check_outputs(out, paths, root)
    _check_ids_once(out, _per_patient(*SMALL))


def test_redis_restart_without_persistence_says_state_lost(corpora, tmp_path):
    root, paths = _copy(corpora, "small", tmp_path / "in")
    run_id, code, stdout, err = _restart_redis_mid_all(
        tmp_path, root, tmp_path / "out", aof=False, after=20, timeout=60, output="--quiet")
    assert code == 1
    assert f"deid-submit: error: run {run_id}: its state is gone from Redis" in err
    assert "start the run again" in err and "Traceback" not in err


def _all_on_own_cluster(tmp_path, root, out, name, timeout, **env_extra):
    """``--action all`` on a Redis and a worker of the test's own, with ``env_extra`` (test
    hooks, limits); returns the exit code, stdout, stderr and the batches' start counts."""
    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    env = env_for(server.url, tmp_path, **env_extra)
    worker = Worker(env, tmp_path / "w.log", name)
    try:
        producer = Producer(env, tmp_path, "--action", "all", "--input", str(root),
                            "--outfolder", str(out), "--batch", "10", "--json", "--quiet")
        code, stdout, err = producer.wait(timeout=timeout)
        starts = client.hgetall(f"deid:run:{latest_run(client)}:deliveries")
    finally:
        worker.kill()
        server.kill()
    return code, stdout, err, starts


def test_poison_file_is_quarantined_and_the_run_completes(corpora, tmp_path):
    root, paths = _copy(corpora, "small", tmp_path / "in")
    make_dataset(99, 0, 0, 0).save_as(root / "patient-0000" / "poison-image.dcm",
                                      enforce_file_format=True)
    # A malformed file that declares a 4 GB pixel element: skipped, never allocated.
    data = bytearray((root / paths[0]).read_bytes())
    at = data.rfind(b"\xe0\x7f\x10\x00")
    data[at + 8:at + 12] = (0xFFFFFFF0).to_bytes(4, "little")
    (root / "patient-0000" / "huge-declared.dcm").write_bytes(bytes(data))
    out = tmp_path / "out"
    code, stdout, err, starts = _all_on_own_cluster(
        tmp_path, root, out, "poison", 120, DEID_TEST_CRASH_ON="poison-", DEID_MAX_RETRIES="1")
    assert code == 1, err[-3000:]  # a quarantined file needs a human: the run is not clean
    s = json.loads(stdout)
    poison = "patient-0000/poison-image.dcm"
    assert s["state"] == "finished"
    assert s["lists"]["poison"] == {poison: poison_reason("get")}
    assert s["lists"]["skipped"] == {"patient-0000/huge-declared.dcm": CORRUPT}
    assert (s["files_found"], s["written"], s["poison"], s["skipped"]) == (202, 200, 1, 1)
    # 1 start + max_retries (1) retries as a batch, 1 file by file that dies on the poison
    # file, 1 that quarantines it and completes.
    assert max(int(v) for v in starts.values()) == 4
    _check_outputs(out, paths, root)
    assert not (out / placed(root, poison, SECRET)).exists()
    assert "poison-image" in (tmp_path / "w.log").read_text()  # the crash really happened


@pytest.mark.parametrize("limit", ["soft", "hard"])
def test_hanging_file_is_quarantined_after_the_time_limit(tmp_path, limit):
    """A file that hangs its worker every time, interrupted by the soft time limit (Python
    code) or only by the hard limit's kill (a hang inside C code): quarantined like a crash."""
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=3, images=20, rows=4, cols=4)
    make_dataset(98, 0, 0, 0).save_as(root / "patient-0001" / "hang-image.dcm",
                                      enforce_file_format=True)
    out = tmp_path / "out"
    hook = "hang-" if limit == "soft" else "hard:hang-"
    code, stdout, err, starts = _all_on_own_cluster(
        tmp_path, root, out, f"hang{limit}", 60, DEID_TEST_HANG_ON=hook, DEID_MAX_RETRIES="1",
        DEID_TASK_TIME_LIMIT="3", DEID_VISIBILITY_TIMEOUT="12")
    assert code == 1, err[-3000:]  # a quarantined file needs a human: the run is not clean
    s = json.loads(stdout)
    hung = "patient-0001/hang-image.dcm"
    assert s["state"] == "finished"
    assert s["lists"]["poison"] == {hung: poison_reason("get", 3)}
    assert (s["files_found"], s["written"], s["poison"], s["failed"]) == (61, 60, 1, 0)
    # As for a crash: 1 start + max_retries (1) as a batch, 1 file by file that runs out of
    # time on the hanging file, 1 that completes without it.
    assert max(int(v) for v in starts.values()) == 4
    _check_outputs(out, paths, root)
    log = (tmp_path / "w.log").read_text()
    if limit == "hard":
        assert "passed the hard time limit (3 s)" in log
    else:
        assert "passed the hard time limit" not in log
        assert "reject requeue=True" in log and "Traceback" not in log  # one line each
    assert "TimeLimitExceeded" not in log


def test_resume_resends_only_what_is_not_done(corpora, tmp_path, monkeypatch, capsys):
    """The producer dies mid-walk; resume finishes the run, sending each batch once."""
    from deid_workers import producer as producer_mod
    from deid_workers.app import app, configure
    from deid_workers.cli import main
    from deid_workers.config import Settings
    from deid_workers.prepare import Submission
    from deid_workers.producer import submit

    root, paths = _copy(corpora, "small", tmp_path / "in")
    out = tmp_path / "out"
    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    env = env_for(server.url, tmp_path)
    for name in ("DEID_BROKER_URL", "DEID_SECRET", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, env[name])
    settings = Settings.from_env(batch_size=10)
    configure(app, settings)
    real = producer_mod.iter_batches

    def dies_after_five(*args, **kwargs):
        for n, batch in enumerate(real(*args, **kwargs)):
            if n == 5:
                raise KeyboardInterrupt  # the producer is killed while walking
            yield batch

    monkeypatch.setattr(producer_mod, "iter_batches", dies_after_five)
    worker = None
    try:
        with pytest.raises(KeyboardInterrupt):
            submit(settings, Submission(action="all", input=str(root), outfolder=str(out)))
        monkeypatch.setattr(producer_mod, "iter_batches", real)
        run_id = latest_run(client)
        worker = Worker(env, tmp_path / "w.log", "resume")
        wait_for(lambda: client.scard(f"deid:run:{run_id}:done:get") >= 4, 60,
                 "the batches sent before the producer died")
        time.sleep(1.0)  # the fifth batch (sent as the walk died) may still be running
        code = main(["--resume", run_id, "--json"])
        stdout, err = capsys.readouterr()
        assert code == 0, err + stdout
        assert f"run {run_id}: re-sent the get batches not done" in err
        s = json.loads(stdout)
        assert (s["files_found"], s["written"]) == (200, 200)
        starts = client.hgetall(f"deid:run:{run_id}:deliveries")
        # Each of the 20 get batches ran once: resume did not send again what was done.
        assert sorted(k for k in starts if k.startswith("get:")) == \
            sorted(f"get:{n}:0" for n in range(20))
        assert set(starts.values()) == {"1"}
        code = main(["--resume", run_id])
        _, err = capsys.readouterr()
        assert code == 0 and f"run {run_id}: already finished; nothing to do" in err
    finally:
        if worker is not None:
            worker.kill()
        server.kill()
    _check_outputs(out, paths, root)
    _check_ids_once(out, _per_patient(*SMALL))
    assert pydicom.dcmread(out / placed(root, paths[0], SECRET)).PatientID != "PID-0000-SENT"
