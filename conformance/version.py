"""The suite's version, as recorded in every results.json."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def suite_version() -> str:
    """The installed chatconform distribution's version ('unknown' from a bare checkout)."""
    try:
        return version("chatconform")
    except PackageNotFoundError:
        return "unknown"
