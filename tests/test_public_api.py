"""The public surface: __all__ lists exactly what users may touch, and all of it exists."""

from __future__ import annotations

import deid_workers
import deid_workers.recipe

EXPECTED = {
    "load_recipe", "get_identifiers", "deidentify", "inspect_dataset", "clean_pixels",
    "entity_item", "RecipeError", "DeidError", "InputError", "OutputExistsError",
    "IdentifiersError", "ConfigError", "StoreError", "Recipe", "__version__",
}


def test_package_all() -> None:
    assert set(deid_workers.__all__) == EXPECTED
    for name in deid_workers.__all__:
        assert hasattr(deid_workers, name), name
    public = {n for n in dir(deid_workers) if not n.startswith("_") and n not in
              {"errors", "recipe", "config", "annotations", "logging"}}
    assert public - EXPECTED <= {n for n in public if hasattr(getattr(deid_workers, n), "__path__")
                                 or type(getattr(deid_workers, n)).__name__ == "module"}


def test_recipe_all() -> None:
    for name in deid_workers.recipe.__all__:
        assert hasattr(deid_workers.recipe, name), name
    assert len(set(deid_workers.recipe.__all__)) == len(deid_workers.recipe.__all__)


def test_version_is_the_installed_distributions(monkeypatch) -> None:
    """The version every output names (its file meta, its provenance) is the one pip installed
    from pyproject.toml; a tree that was never installed says so rather than pretend."""
    import tomllib
    from importlib import metadata
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert deid_workers.__version__ == metadata.version("deid-workers") == project["project"]["version"]

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    from deid_workers.version import installed

    assert installed() == "0+unknown"


def test_errors_share_root() -> None:
    assert issubclass(deid_workers.RecipeError, deid_workers.DeidError)
