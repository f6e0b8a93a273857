"""Task bodies called directly, with fakeredis standing in for the broker's Redis."""

from __future__ import annotations

import os

import pydicom
import pytest

from deid_workers.app import app
from deid_workers.run import client as run_client
from deid_workers.run.record import RunRecord
from deid_workers.run.store import RunStore
from deid_workers.synth import write_study_tree
from deid_workers.tasks import context

RECIPE = """FORMAT dicom

%header

REPLACE PatientID var:id
REMOVE PatientName
"""


@pytest.fixture
def fake(fake_redis, cluster_key):
    """The suite's fake Redis registered as the tasks' client for the app's broker URL, the
    worker holding the suite's cluster key."""
    client = fake_redis
    url = str(app.conf.broker_url)
    saved = dict(run_client._SHARED)
    run_client._SHARED[(url, True)] = client
    context.forget()
    yield client
    run_client._SHARED.clear()
    run_client._SHARED.update(saved)
    context.forget()


@pytest.fixture
def placed(cluster_key):
    """placed(root, rel) -> where the default (mirror) layout puts input ``rel``, relative
    to the output folder, with the key the ``fake`` fixture gives the workers."""
    from deid_workers.files.layout import Layout

    layout = Layout("mirror", lambda: cluster_key.encode())

    def place(root: str, rel: str) -> str:
        ds = pydicom.dcmread(os.path.join(root, rel), stop_before_pixels=True, force=True)
        out = layout.before(rel, ds)
        assert out is not None
        return out

    return place


@pytest.fixture
def make_run(fake, tmp_path):
    """make_run(action, **record) -> (store, input root, relative paths); batches of 3."""

    def make(action: str, *, corrupt: int = 2, images: int = 3, patients: int = 2, **extra):
        root = tmp_path / "in"
        paths = write_study_tree(root, patients=patients, images=images, corrupt=corrupt)
        extra.setdefault("recipe_texts", (RECIPE,))
        extra.setdefault("settings", {"entity_field": "PatientID"})
        record = RunRecord(action, str(root), str(tmp_path / "out"), **extra)
        store = RunStore.create(fake, "t" + action, record.spec(), expiry=600,
                                keys=context.worker_keys())
        n = 0
        for start in range(0, len(paths), 3):
            store.add_batch(n, paths[start:start + 3])
            n += 1
        store.update(walk_done=True, n_batches=n)
        return store, str(root), paths, n

    return make
