"""Find, read, parse, merge and validate recipes: the one entry point, :func:`load_recipe`.

Paths are resolved as deid resolves them (a directory means its first file whose name starts
with ``deid``), so any deid recipe loads unchanged. Filter criteria are compiled here too, so a
bad criteria line fails at load time, before any file is touched. A PS3.15 Annex E profile
(``profile=["basic", "retain-uids"]``) is rendered from the shipped standard tables
(:mod:`.annex_e`) and comes first, so the user's recipes merge on top of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ..errors import RecipeError
from . import filters
from .annex_e import render_profile, source_name
from .compiled import compiled
from .model import Recipe
from .options import parse_profile
from .parser import merge_recipes, parse_recipe

__all__ = ["load_recipe", "default_recipe_path", "find_recipe", "profile_recipe", "recipe_sources",
           "parse_sources"]

PathLike = str | os.PathLike[str]


def default_recipe_path() -> Path:
    """The project's shipped default recipe (PS3.15 Annex E, spec Part A §1)."""
    return Path(str(resources.files("deid_workers.recipe") / "data" / "default.dicom"))


def find_recipe(path: PathLike) -> Path:
    """A recipe file from a path: the file itself, or a directory's first ``deid*`` file."""
    p = Path(path)
    if p.is_dir():
        candidates = sorted(x for x in os.listdir(p) if x.startswith("deid"))
        if not candidates:
            raise RecipeError("no recipe file (name starting with 'deid') in directory", str(p))
        p = p / candidates[0]
    if not p.is_file():
        raise RecipeError("recipe file not found", str(p))
    return p


def _read(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe: {exc.__class__.__name__}", str(p)) from None


def profile_recipe(profile: str | Sequence[str]) -> tuple[str, str]:
    """(name, text) of a PS3.15 Annex E profile, ``"basic,retain-uids"`` or
    ``["basic", "retain-uids"]``: the recipe rendered from the shipped tables, named
    ``profile:basic,retain-uids``. Raises :class:`~.options.ProfileError` for an unknown
    option or options that contradict (naming the attributes)."""
    options = parse_profile(profile)
    return source_name(options), render_profile(options)


def load_recipe(
    paths: PathLike | Sequence[PathLike] | None = None, *, text: str | None = None,
    profile: str | Sequence[str] | None = None,
) -> Recipe:
    """Load one recipe or merge several (in order); ``text`` is a recipe given as a string,
    merged after any paths. Nothing at all -> the project's default recipe.

    ``profile`` (``"basic,OPTION,..."`` or a list of those words) puts the PS3.15 Annex E
    profile first (:func:`profile_recipe`); the paths and text merge on top of it, as
    recipes merge. Without it nothing changes.

    Raises RecipeError (with .path and .line) for anything that does not parse, and its
    ProfileError for a profile that cannot be used.
    """
    sources = recipe_sources(paths, profile=profile, default=text is None)
    if text is not None:
        sources.append((None, text))
    return parse_sources(sources)


def recipe_sources(
    paths: PathLike | Sequence[PathLike] | None = None, *,
    profile: str | Sequence[str] | None = None, default: bool = True,
) -> list[tuple[str | None, str]]:
    """The texts :func:`load_recipe` would merge, in order, each with its name (a file's
    path, a profile's ``profile:...``): what travels to the workers, which parse the same
    texts (:func:`parse_sources`). Nothing given -> the default recipe, when ``default``."""
    sources: list[tuple[str | None, str]] = []
    if profile is not None:
        sources.append(profile_recipe(profile))
    if paths is None:
        items: list[PathLike] = [default_recipe_path()] if default and profile is None else []
    elif isinstance(paths, (str, os.PathLike)):
        items = [paths]
    else:
        items = list(paths)
    for item in items:
        p = find_recipe(item)
        sources.append((str(p), _read(p)))
    return sources


def parse_sources(sources: Sequence[tuple[str | None, str]]) -> Recipe:
    """Parse, merge and compile recipe texts (``(name, text)``, in merge order): errors name
    each text's name and line, and the recipe's digest is of the texts alone."""
    recipes = [parse_recipe(text, name) for name, text in sources]
    if not recipes:
        raise RecipeError("no recipe given")
    recipe = merge_recipes(recipes, [text for _, text in sources])  # one comes back as it is
    filters.compile_filters(recipe)
    compiled(recipe)
    return recipe
