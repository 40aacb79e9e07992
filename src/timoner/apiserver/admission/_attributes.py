"""What an admission plugin is told about a request, and what a plugin is.

Upstream's `admission.Attributes` and `admission.Interface` in Python: one
`Attributes` per write request; a `Plugin` may mutate `attrs.obj` in
`admit` (mutating phase) and refuse the request in `validate` (validating
phase) by raising an `errors.APIError` (a `Forbidden`, `Invalid`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from timoner.api.registry import ResourceInfo

from .._http import User

__all__ = ["Attributes", "Plugin", "CREATE", "UPDATE", "DELETE", "CONNECT"]

CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"
CONNECT = "CONNECT"


@dataclass
class Attributes:
    """One request as admission sees it (upstream's admission.Attributes)."""

    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    info: ResourceInfo  # the resource the request addresses (the parent's, for a subresource)
    namespace: str | None
    name: str
    obj: dict | None  # the new object (None for DELETE); mutating plugins change it in place
    old: dict | None  # the current object (UPDATE, DELETE)
    subresource: str = ""
    dry_run: bool = False
    user: User | None = None
    options: dict[str, Any] = field(default_factory=dict)  # Create/Update/DeleteOptions as sent


class Plugin(Protocol):
    """An admission plugin; `handles` decides whether the other two are called at all."""

    name: str

    def handles(self, attrs: Attributes) -> bool: ...

    async def admit(self, attrs: Attributes) -> None:
        """Mutating phase: change `attrs.obj` in place."""

    async def validate(self, attrs: Attributes) -> None:
        """Validating phase: raise an `errors.APIError` to refuse the request."""
