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
from .version import __version__

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
