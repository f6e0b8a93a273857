"""keys: the cluster key's checks, its labelled derivations, tags and sealed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deid_workers.errors import ConfigError
from deid_workers.keys import GENERATE, ClusterKeys, Unsealable, check_secret

ROOT = Path(__file__).resolve().parents[1]
GOOD = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OTHER = b"9f8e7d6c5b4a3928170605f4e3d2c1b0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def _shipped_placeholders() -> list[bytes]:
    """Every key placeholder the repository ships: someone will copy one."""
    found = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.split("=")[0] == "DEID_SECRET":  # none now: the key is a file
            found.append(line.split("=", 1)[1].encode())
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/secret.example.yaml").read_text()):
        if doc["metadata"]["name"] == "deid-cluster-key":
            found.append(doc["stringData"]["secret.key"].encode())
    return found


@pytest.mark.parametrize(("key", "why"), [
    (b"", "empty"), (b"   \n", "empty"), (b"k", "fewer than 32"), (b"x" * 31, "fewer than 32"),
    (b"change-me-deid-secret", "placeholder"), (b"CHANGE-ME" + GOOD, "placeholder"),
    (b"ab" * 20, "repeats"),
])
def test_weak_keys_are_refused_in_one_line_saying_how_to_make_one(key, why):
    with pytest.raises(ConfigError) as err:
        check_secret(key, "DEID_SECRET")
    message = str(err.value)
    assert message.startswith("DEID_SECRET: ") and why in message and GENERATE in message
    assert "\n" not in message
    assert len(key.strip()) < 4 or key.strip().decode() not in message  # never quoted back


def test_the_shipped_placeholders_are_refused():
    placeholders = _shipped_placeholders()
    assert placeholders  # the cluster key's template is there
    for value in placeholders:
        with pytest.raises(ConfigError, match="placeholder"):
            check_secret(value, "DEID_SECRET_FILE x")


def test_a_generated_key_passes_stripped():
    assert check_secret(GOOD + b"\n", "k") == GOOD


def test_derived_keys_are_labelled_apart_and_never_the_secret():
    keys = ClusterKeys.derive(GOOD)
    parts = {keys._sign, keys._digest}
    assert len(parts) == 2 and GOOD[:32] not in parts and GOOD not in parts
    assert len(keys.fingerprint) == 16
    other = ClusterKeys.derive(OTHER)
    assert other.fingerprint != keys.fingerprint
    assert "0f1e" not in repr(keys) and keys.fingerprint in repr(keys)


def test_a_tag_fits_only_its_own_place_and_key():
    keys = ClusterKeys.derive(GOOD)
    tag = keys.sign("run1", "batches", "0", '["a.dcm"]')
    assert keys.verify(tag, "run1", "batches", "0", '["a.dcm"]')
    assert not keys.verify(tag, "run1", "batches", "1", '["a.dcm"]')  # another batch
    assert not keys.verify(tag, "run2", "batches", "0", '["a.dcm"]')  # another run
    assert not keys.verify(tag, "run1", "batches0", "", '["a.dcm"]')  # parts are framed
    assert not ClusterKeys.derive(OTHER).verify(tag, "run1", "batches", "0", '["a.dcm"]')


def test_a_sealed_value_opens_only_where_it_was_sealed():
    keys = ClusterKeys.derive(GOOD)
    blob = keys.seal(b"PID-0001", "run1", "entity", "abc")
    assert b"PID-0001" not in blob and keys.seal(b"PID-0001", "run1", "entity", "abc") != blob
    assert keys.open(blob, "run1", "entity", "abc") == b"PID-0001"
    for context in (("run2", "entity", "abc"), ("run1", "entity", "abd")):
        with pytest.raises(Unsealable):
            keys.open(blob, *context)
    with pytest.raises(Unsealable):
        ClusterKeys.derive(OTHER).open(blob, "run1", "entity", "abc")
    with pytest.raises(Unsealable):
        keys.open(blob[:-1] + bytes([blob[-1] ^ 1]), "run1", "entity", "abc")


def test_names_are_keyed_and_salted():
    keys = ClusterKeys.derive(GOOD)
    name = keys.namer("entity", "salt1")
    assert name("PID-1") == name("PID-1") and len(name("PID-1")) == 32
    assert name("PID-1") != keys.namer("entity", "salt2")("PID-1")
    assert name("PID-1") != ClusterKeys.derive(OTHER).namer("entity", "salt1")("PID-1")
