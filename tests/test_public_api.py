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


def test_version() -> None:
    assert deid_workers.__version__ == "0.1.0"


def test_errors_share_root() -> None:
    assert issubclass(deid_workers.RecipeError, deid_workers.DeidError)
