"""Fixtures for recipe tests; the builders live in recipe_helpers (importable by bare name)."""

from __future__ import annotations

import pytest
from pydicom.dataset import FileDataset
from recipe_helpers import make_dataset


@pytest.fixture
def dataset() -> FileDataset:
    return make_dataset()
