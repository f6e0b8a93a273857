"""Fixtures for the deployment-file tests; the loaders live in deployfiles.py.

(A separate, uniquely named module: ``from conftest import`` could pick up another
directory's conftest.)
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deployfiles import COMPOSE, ENV_EXAMPLE, load_k8s_documents, parse_env_file


@pytest.fixture(scope="session")
def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def compose(compose_text: str) -> dict[str, Any]:
    data = yaml.safe_load(compose_text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="session")
def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return load_k8s_documents()


@pytest.fixture(scope="session")
def k8s_objects(
    k8s_docs: list[tuple[str, dict[str, Any]]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects by (kind, name), kustomization excluded."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for _, doc in k8s_docs:
        if doc.get("kind") == "Kustomization":
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objects, f"duplicate object {key}"
        objects[key] = doc
    return objects
