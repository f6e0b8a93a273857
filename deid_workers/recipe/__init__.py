"""The pure recipe engine: recipe text in, datasets and plain dicts out (no Celery, no I/O
beyond reading recipe files and the package's own tables in ``data/``).

Layers, each importing only those before it: model -> parser / standard / cleantext /
selectors -> funcs -> values -> iods / dummies / options -> annex_e -> conformance -> actions /
filters / pixels / identifiers -> loader -> coverage. ``data/standard/`` holds the DICOM
standard's tables (PS3.15 Annex E, edition 2026d) that the profiles are generated from.
"""

from __future__ import annotations

from ..errors import RecipeError
from .actions import deidentify, ids_fields_read
from .filters import compile_filters, inspect_dataset
from .identifiers import entity_item, get_identifiers
from .loader import default_recipe_path, load_recipe, parse_sources, profile_recipe, recipe_sources
from .model import ACTIONS, Action, Coordinates, FilterGroup, Label, Recipe
from .parser import merge_recipes, parse_recipe
from .pixels import clean_pixels

__all__ = [
    "ACTIONS",
    "Action",
    "Coordinates",
    "FilterGroup",
    "Label",
    "Recipe",
    "RecipeError",
    "clean_pixels",
    "compile_filters",
    "default_recipe_path",
    "deidentify",
    "entity_item",
    "get_identifiers",
    "ids_fields_read",
    "inspect_dataset",
    "load_recipe",
    "merge_recipes",
    "parse_recipe",
    "parse_sources",
    "profile_recipe",
    "recipe_sources",
]
