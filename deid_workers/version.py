"""The installed distribution's version, in the base layer so that every layer can name it."""

from __future__ import annotations

from importlib import metadata


def installed() -> str:
    """``0+unknown`` for a source tree never installed: never a made-up release number, which
    would name the wrong code in every output's file meta."""
    try:
        return metadata.version("deid-workers")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = installed()
