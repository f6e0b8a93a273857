"""Issue 22's attacks, each run against a real redis-server with a password and AOF (as
docker-compose had it) and a real worker, by someone who holds the Redis password and nothing
else: the worker must refuse, say why in one line, mark the run failed, and touch no file.

Also: what is kept at rest (the AOF, before and after --purge) and what crosses the wire holds
no identifier; a worker with another key, or a run outside the worker's folders, is refused;
a full Redis (maxmemory, noeviction) ends the run with one plain line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydicom
import pytest
from integration_procs import SECRET, RedisServer, Relay, Worker, env_for, wait_for

from deid_workers.cli import main
from deid_workers.synth import phi_strings, write_study_tree

pytestmark = pytest.mark.integration

PASSWORD = "attack-tests-redis-password"


def _cluster(tmp_path_factory, name: str):
    """A password + AOF Redis and one worker whose single root is ``<base>/data``."""
    base = tmp_path_factory.mktemp(name)
    server = RedisServer(base, aof=True, password=PASSWORD)
    roots = base / "data"
    roots.mkdir()
    worker = Worker(env_for(server.url, roots), base / "worker.log", name)
    try:
        worker.wait_ready()
        yield server, worker.log, roots
    finally:
        worker.stop()
        server.stop()


@pytest.fixture(scope="module")
def aof(tmp_path_factory):
    """(RedisServer with password + AOF, worker log, the worker's single root folder)."""
    yield from _cluster(tmp_path_factory, "attacks")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Like :func:`aof`, for the test that fills Redis: Celery ends a worker whose Redis
    refuses a write of its own (noting a task it took, or its restore mutex: "Unrecoverable
    error: OutOfMemoryError"), so this one is the filling test's own."""
    yield from _cluster(tmp_path_factory, "full")


@pytest.fixture
def producer(aof, monkeypatch):
    return _producer(aof, monkeypatch)


def _producer(cluster, monkeypatch):
    server, log, roots = cluster
    monkeypatch.setenv("DEID_BROKER_URL", server.url)
    monkeypatch.setenv("DEID_SECRET", SECRET)
    for name in ("DEID_SECRET_FILE", "MESSAGELEVEL", "DEID_INPUT_ROOTS", "DEID_OUTPUT_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    from deid_workers.app import app, configure
    from deid_workers.config import Settings

    configure(app, Settings(broker_url=server.url))
    return server.client()


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _send(task: str, *args: object) -> None:
    """What the attacker sends: a plain JSON task message, as anyone with the password can."""
    from deid_workers.app import app

    app.send_task(task, args=list(args))


def _refused(log: Path, run_id: str, since: int) -> str:
    def line() -> str | None:
        text = log.read_text()[since:]
        return next((x for x in text.splitlines() if f"run {run_id}" in x and "refused" in x),
                    None)
    return str(wait_for(line, 30, f"the worker refusing run {run_id}"))


def _tree(root: Path, patients: int = 1) -> list[str]:
    return write_study_tree(root, patients=patients, images=2)


def test_a_forged_run_is_refused_and_touches_nothing(aof, producer, tmp_path):
    """HSET a run record and send its tasks: copy an unsubmitted folder into the release tree,
    rewrite a source folder in place (input = output), read any file's identifiers."""
    server, log, roots = aof
    secret_in, release = roots / "unsubmitted", roots / "release"
    paths = _tree(secret_in)
    release.mkdir()
    before = {p: (secret_in / p).read_bytes() for p in paths}
    forged = {
        "evil-copy": {"action": "put", "input": str(secret_in), "outfolder": str(release),
                      "overwrite": True, "recipe_texts": ["FORMAT dicom\n%header\n"]},
        "evil-inplace": {"action": "put", "input": str(secret_in), "outfolder": str(secret_in),
                         "overwrite": True},
        "evil-read": {"action": "get", "input": "/", "outfolder": str(release)},
    }
    for run_id, record in forged.items():
        since = len(log.read_text())
        fields = {k: json.dumps(v) for k, v in record.items()}
        fields.update(state=json.dumps("running"), created=json.dumps(time.time()),
                      walk_done="true", n_batches="1", salt=json.dumps("00"))
        producer.hset(f"deid:run:{run_id}", mapping=fields)
        batch = [str(secret_in / paths[0])] if run_id == "evil-read" else paths
        producer.hset(f"deid:run:{run_id}:batches", "0", json.dumps(batch))
        _send("deid.put" if record["action"] == "put" else "deid.get", run_id, 0)
        line = _refused(log, run_id, since)
        assert "not signed with the cluster key" in line
        state = wait_for(lambda r=run_id: json.loads(producer.hget(f"deid:run:{r}", "state"))
                         == "failed" and producer.hget(f"deid:run:{r}", "error"), 10, "failed")
        assert "refused by a worker" in state
    assert list(release.iterdir()) == []
    assert {p: (secret_in / p).read_bytes() for p in paths} == before
    assert not [k for k in producer.scan_iter("deid:run:evil-*:ids:*")]


def test_a_submitted_run_cannot_be_redirected_or_replayed(aof, producer, capsys, tmp_path):
    server, log, roots = aof
    root, out = roots / "in-legit", roots / "out-legit"
    paths = _tree(root)
    code, stdout, err = _run(capsys, "--action", "all", "--json", "--quiet", "--input",
                             str(root), "--outfolder", str(out))
    assert code == 0, err
    run_id = json.loads(stdout)["run_id"]
    elsewhere = roots / "attacker"
    elsewhere.mkdir()
    key = f"deid:run:{run_id}"
    # Plain fields named like signed ones are ignored; a batch list that is not signed is
    # refused (batch 9: one the run never had, so no "already done" short cut).
    producer.hset(key, mapping={"outfolder": json.dumps(str(elsewhere)), "overwrite": "true",
                                "input": json.dumps(str(roots))})
    producer.hset(f"{key}:batches", "9", json.dumps(["../attacker/x.dcm"]))
    since = len(log.read_text())
    _send("deid.put", run_id, 9)
    assert "batches 9 is not signed" in _refused(log, run_id, since)
    # The run's signed record, replayed under another run id, is refused as well.
    replay = "replayed-run"
    producer.hset(f"deid:run:{replay}", mapping=producer.hgetall(key))
    producer.hset(f"deid:run:{replay}:batches", "0", producer.hget(f"{key}:batches", "0"))
    since = len(log.read_text())
    _send("deid.put", replay, 0)
    assert "run record is not signed" in _refused(log, replay, since)
    assert list(elsewhere.iterdir()) == []
    assert len(list(out.rglob("*.dcm"))) == len(paths)  # the run's outputs, no more


def test_a_worker_with_another_key_refuses_the_run(aof, producer, capsys, monkeypatch):
    server, log, roots = aof
    root = roots / "in-otherkey"
    _tree(root)
    monkeypatch.setenv("DEID_SECRET", "another-key-0123456789abcdef0123456789")
    code, stdout, err = _run(capsys, "--action", "all", "--quiet", "--input", str(root),
                             "--outfolder", str(roots / "out-otherkey"))
    assert code == 1
    (line,) = [x for x in err.splitlines() if x.startswith("deid-submit: error:")]
    assert "refused by a worker" in line and "was submitted with key" in line
    assert "this process holds key" in line and "same DEID_SECRET_FILE" in line
    assert not (roots / "out-otherkey").exists() or not list((roots / "out-otherkey").iterdir())


@pytest.mark.parametrize("which", ["output", "input"])
def test_a_run_outside_the_workers_roots_is_refused(aof, producer, capsys, tmp_path, which):
    server, log, roots = aof
    inside, outside = roots / f"in-roots-{which}", tmp_path / "outside"
    _tree(inside)
    root, out = (inside, outside / "out") if which == "output" else (outside / "in", roots / "o")
    if which == "input":
        _tree(root)
    code, stdout, err = _run(capsys, "--action", "all", "--quiet", "--input", str(root),
                             "--outfolder", str(out))
    assert code == 1
    (line,) = [x for x in err.splitlines() if x.startswith("deid-submit: error:")]
    env = "DEID_OUTPUT_ROOTS" if which == "output" else "DEID_INPUT_ROOTS"
    assert f"is outside this worker's {env}" in line
    assert not list(out.rglob("*.dcm"))


def test_no_identifier_at_rest_or_on_the_wire(aof, producer, capsys, monkeypatch):
    server, log, roots = aof
    relay = Relay(server.port)
    monkeypatch.setenv("DEID_BROKER_URL", f"redis://:{PASSWORD}@127.0.0.1:{relay.port}/0")
    root = roots / "in-rest"
    paths = write_study_tree(root, patients=2, images=2)
    uids = {str(pydicom.dcmread(root / p).SOPInstanceUID) for p in paths}
    try:
        code, stdout, err = _run(capsys, "--action", "get", "--json", "--quiet", "--input",
                                 str(root), "--records", str(roots / "rest-ids"))
    finally:
        relay.close()
    assert code == 0, err
    run_id = json.loads(stdout)["run_id"]
    secrets = phi_strings(0) | phi_strings(1) | uids | {str(root)}
    wire = bytes(relay.seen)
    assert f"deid:run:{run_id}".encode() in wire  # the relay saw the run
    assert [s for s in secrets if s.encode() in wire] == []
    # Redis' files: everything it has ever been sent is in the AOF, purged or not.
    aof_bytes = _aof(server.folder)
    assert f"deid:run:{run_id}".encode() in aof_bytes
    assert [s for s in secrets if s.encode() in aof_bytes] == []
    ttls = {producer.ttl(k) for k in producer.scan_iter(f"deid:run:{run_id}*")}
    assert ttls and min(ttls) > 0  # every key of the run expires
    assert _run(capsys, "--purge", run_id)[0] == 0
    assert [s for s in secrets if s.encode() in _aof(server.folder)] == []


def _every_byte(client) -> bytes:
    """Every key name and every value of every key in Redis (each read by its type, since
    DUMP may compress), as one byte string."""
    out: list[bytes] = []
    for key in client.scan_iter("*", count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"hash":
            out += [x for kv in client.hgetall(key).items() for x in kv]
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += list(client.zrange(key, 0, -1))
        elif kind == b"list":
            out += list(client.lrange(key, 0, -1))
        elif kind == b"stream":
            out += [repr(e).encode() for e in client.xrange(key)]
        else:
            assert kind == b"string", (key, kind)
            out.append(client.get(key) or b"")
    return b"\n".join(out)


def test_no_input_path_at_rest(aof, producer, capsys):
    """Archives name folders and files after their patients: after an ``all`` and an
    ``inspect`` run with skipped files, no key, no value and no byte of the AOF shows a name or
    an ID from the paths, and the run log and the report still map them."""
    import redis

    from deid_workers import reasons
    from deid_workers.synth import make_dataset, truncated_dicom_bytes

    server, log, roots = aof
    name, pid = "QUIMBY_HORTENSE", "MRN48213977"
    root = roots / "paths"
    folder = root / f"{name}_{pid}" / "CT 1"
    folder.mkdir(parents=True)
    for i in range(3):
        make_dataset(40 + i).save_as(folder / f"{name}_{i}.dcm", enforce_file_format=True)
    (folder / f"{pid}_broken.dcm").write_bytes(truncated_dicom_bytes(3))
    (root / f"{name} notes.dcm").write_text("not DICOM\n")
    skipped = {f"{name}_{pid}/CT 1/{pid}_broken.dcm": reasons.CORRUPT,
               f"{name} notes.dcm": reasons.NOT_DICOM}
    runs = []
    for action, out in (("all", "out"), ("inspect", "report")):
        code, stdout, err = _run(capsys, "--action", action, "--json", "--quiet", "--input",
                                 str(root), "--outfolder", str(roots / f"paths-{out}"))
        assert code == 0, err
        s = json.loads(stdout)
        runs.append(s["run_id"])
        assert s["lists"]["skipped"] == skipped
    lines = [json.loads(x) for x in (roots / "paths-out-records" / f"deid-run.{runs[0]}.jsonl")
             .read_text().splitlines()]
    by_path = {x["path"]: x["outcome"] for x in lines}
    assert by_path == {**{p: "skipped" for p in skipped},
                       **{f"{name}_{pid}/CT 1/{name}_{i}.dcm": "written" for i in range(3)}}
    report = (roots / "paths-report" / "deid-inspect.tsv").read_text()
    assert f"{name}_{pid}/CT 1/{name}_0.dcm" in report
    raw = redis.Redis.from_url(server.url)
    try:
        assert any(r.encode() in k for r in runs for k in raw.scan_iter("deid:run:*"))
        everything = _every_byte(raw)
    finally:
        raw.close()
    aof_bytes = _aof(server.folder)
    for token in (name, pid):
        assert token.encode() not in everything, token
        assert token.encode() not in aof_bytes, token


def _aof(folder: Path) -> bytes:
    producer_files = [p for p in folder.rglob("*") if p.is_file() and "appendonly" in p.name]
    assert producer_files, "no AOF written"
    return b"".join(p.read_bytes() for p in producer_files)


@pytest.mark.parametrize("when", ["while workers write", "at the start"])
def test_a_full_redis_ends_the_run_with_one_plain_line(full, capsys, monkeypatch, when):
    """maxmemory with noeviction (deploy/redis/redis.conf): writes are refused, and deid-submit
    says so in one line, with what to do, instead of a traceback or waiting forever."""
    from deid_workers import producer as prod

    server, log, roots = full
    producer = _producer(full, monkeypatch)
    root = roots / f"in-full-{when[:2]}"
    write_study_tree(root, patients=20, images=5)

    def fill() -> None:  # from now on Redis holds what it holds and takes nothing more
        producer.config_set("maxmemory-policy", "noeviction")
        producer.config_set("maxmemory", str(int(producer.info("memory")["used_memory"])))

    if when == "at the start":
        fill()
    else:
        real = prod.wait
        monkeypatch.setattr(prod, "wait", lambda *a, **k: (fill(), real(*a, **k))[1])
    try:
        code, stdout, err = _run(capsys, "--action", "all", "--quiet", "--batch", "5",
                                 "--input", str(root), "--outfolder", str(root) + "-out")
    finally:
        producer.config_set("maxmemory", "0")
    assert code == 1 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("deid-submit: error:")]
    assert "Redis is out of memory" in line and "maxmemory" in line
    assert ("start again" if when == "at the start" else "--resume") in line
