"""Reading decoded JSON of unknown shape: the value if it has the expected type, else an empty one.

CRD validation walks objects that have not been type-checked yet (a wrong type is reported
by the check for that field), so every other check reads through these.
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_dict", "as_list", "as_str"]


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""
