"""deploy/redis/users.acl.template and deploy/secrets.sh: least privilege, and secrets as files.

The users are checked against a real redis-server in tests/integration/test_redis_tls_acl.py;
here the rules themselves are read, so a widening (a ``~*``, a ``+@all``, a user reaching the
run store that should not) fails without starting anything.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from deployfiles import SECRETS_SH, acl_rules

USERS = {"default", "producer", "worker", "flower", "keda", "probe"}
ADMIN = {"+config", "+flushall", "+flushdb", "+keys", "+acl", "+shutdown", "+debug", "+monitor",
         "+save", "+bgsave", "+bgrewriteaof", "+replicaof", "+slaveof", "+module", "+migrate"}


def _commands(rules: list[str]) -> set[str]:
    return {r.lower() for r in rules if r.startswith("+")}


def _keys(rules: list[str]) -> set[str]:
    return {r[1:] for r in rules if r.startswith("~")}


def test_every_user_starts_from_nothing_and_the_default_user_is_off():
    users = acl_rules()
    assert set(users) == USERS
    assert users["default"][0] == "off"
    for name, rules in users.items():
        assert {"resetkeys", "resetchannels", "-@all"} <= set(rules), name
        assert not [r for r in rules if r.startswith("+@") or r in ("~*", "&*", "allkeys",
                                                                    "allchannels", "allcommands")]
        assert not ADMIN & _commands(rules), name
        if name != "default":
            assert rules[0] == "on" and rules[1] == f"#@{name}@", name  # a hash, filled in


def test_only_the_producer_and_the_workers_touch_the_run_store():
    users = acl_rules()
    for name in ("producer", "worker"):
        assert "deid:*" in _keys(users[name])
    for name in ("flower", "keda", "probe", "default"):
        assert not [k for k in _keys(users[name]) if k.startswith("deid") or k == "*"], name
    assert _keys(users["keda"]) == {"get", "inspect", "put", "clean", "ocr"}
    assert _commands(users["keda"]) - {"+ping", "+hello", "+auth"} == {"+eval", "+evalsha",
                                                                       "+type", "+llen"}
    assert _commands(users["probe"]) == {"+ping", "+hello", "+auth"} and not _keys(users["probe"])
    # only the producer reads Redis' memory use (to say when it is full)
    assert [n for n, r in users.items() if "+info" in _commands(r)] == ["producer"]


@pytest.mark.skipif(not shutil.which("openssl"), reason="secrets.sh needs openssl")
def test_secrets_sh_makes_private_files_and_keeps_them(tmp_path):
    folder = tmp_path / "secrets"
    subprocess.run(["sh", str(SECRETS_SH), str(folder)], check=True, capture_output=True)
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(folder) == 0o700 and mode(folder / "tls") == 0o700
    key = (folder / "deid-secret.key").read_text().strip()
    assert len(key) == 64 and mode(folder / "deid-secret.key") == 0o600
    acl = (folder / "users.acl").read_text()
    for user in ("producer", "worker", "flower", "keda", "probe"):
        password = (folder / f"redis-{user}.password").read_text().strip()
        assert len(password) == 64 and password not in acl
        assert f"user {user} on #{hashlib.sha256(password.encode()).hexdigest()} " in acl
    assert "@" not in acl.replace("@all", "")  # every placeholder filled
    assert (folder / "flower.auth").read_text().startswith("admin:")
    for name in ("ca.crt", "redis.crt", "redis.key", "ca.key"):
        assert (folder / "tls" / name).stat().st_size > 500, name
    assert mode(folder / "tls" / "ca.key") == 0o600
    assert mode(folder / "redis-worker.password") == 0o600
    assert mode(folder / "redis-probe.password") == 0o644  # Redis' own health check reads it
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    subprocess.run(["sh", str(SECRETS_SH), str(folder)], check=True, capture_output=True)
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_the_producer_workers_and_flower_reach_every_queue():
    # A queue whose list a user may not touch fails its LLEN (--status, Flower) or its push.
    import fnmatch

    from deid_workers.app import QUEUES

    users = acl_rules()
    for name in ("producer", "worker", "flower"):
        patterns = _keys(users[name])
        assert [q for q in QUEUES if not any(fnmatch.fnmatchcase(q, p) for p in patterns)] == [], name
