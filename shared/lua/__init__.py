"""The Lua scripts of the Redis stores, one ``.lua`` file each, every file documenting its
KEYS, ARGV and return value at its top. Status names are passed in ARGV from
``shared.status``, never written in the Lua."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def source(name: str) -> str:
    """The text of the script ``name`` (a file name in this package, e.g. ``job_claim.lua``).

    Raises FileNotFoundError for a name that is not packaged here.
    """
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
