"""deid-workers: DICOM de-identification with pydicom deid's recipes, spread over Celery workers.

The library surface is below; the pipeline lives in :mod:`deid_workers.cli` (deid-submit) and
the worker entry point. Everything raised on purpose derives from :class:`DeidError`.
"""

from __future__ import annotations

import logging

from .errors import (
    ConfigError,
    DeidError,
    IdentifiersError,
    InputError,
    OutputExistsError,
    RecipeError,
    StoreError,
)
from .recipe import (
    Recipe,
    clean_pixels,
    deidentify,
    entity_item,
    get_identifiers,
    inspect_dataset,
    load_recipe,
)


def _version() -> str:
    """The installed distribution's version; ``0+unknown`` for a source tree never installed
    (never a made-up release number, which would name the wrong code in every output)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("deid-workers")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ConfigError",
    "DeidError",
    "IdentifiersError",
    "InputError",
    "OutputExistsError",
    "Recipe",
    "RecipeError",
    "StoreError",
    "__version__",
    "clean_pixels",
    "deidentify",
    "entity_item",
    "get_identifiers",
    "inspect_dataset",
    "load_recipe",
]
