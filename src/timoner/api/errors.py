"""The one exception tree of Timoner, each class an API error with its HTTP code.

Every failure a client can see is raised as an `APIError` and turned into a
Kubernetes `Status` object on the wire by `APIError.status()`. The messages
follow upstream wording (k8s.io/apimachinery/pkg/api/errors) because clients
and people grep for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "APIError",
    "AlreadyExists",
    "BadRequest",
    "Cause",
    "Conflict",
    "Expired",
    "Forbidden",
    "Gone",
    "InternalError",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "ServiceUnavailable",
    "Timeout",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "qualified_resource",
]


@dataclass(frozen=True, slots=True)
class Cause:
    """One `details.causes` entry: what is wrong with which field."""

    reason: str
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


def qualified_resource(resource: str, group: str) -> str:
    """`deployments.apps`, or `pods` for the core group, as upstream messages name them."""
    return f"{resource}.{group}" if group else resource


@dataclass
class APIError(Exception):
    """An error that the API server answers with a `Status` object."""

    message: str
    code: int = 500
    reason: str = "InternalError"
    name: str = ""
    group: str | None = None
    kind: str = ""
    uid: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after: int | None = None

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        """The `Status` object for this error, as upstream serialises it."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.uid:
            details["uid"] = self.uid
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            out["details"] = details
        if not self.reason:
            del out["reason"]
        return out


class NotFound(APIError):
    """404: `deployments.apps "x" not found`; `details.kind` is the resource."""

    def __init__(self, resource: str, name: str, *, group: str = "", message: str | None = None) -> None:
        qualified = qualified_resource(resource, group)
        text = message or (f'{qualified} "{name}" not found' if name else f"{qualified} not found")
        super().__init__(text, 404, "NotFound", name=name, group=group, kind=resource)


class AlreadyExists(APIError):
    """409: `pods "x" already exists`."""

    def __init__(self, resource: str, name: str, *, group: str = "") -> None:
        qualified = qualified_resource(resource, group)
        super().__init__(
            f'{qualified} "{name}" already exists', 409, "AlreadyExists", name=name, group=group, kind=resource
        )


class Conflict(APIError):
    """409: the object changed since the client read it, or a precondition failed."""

    def __init__(
        self,
        resource: str,
        name: str,
        detail: str = "the object has been modified; please apply your changes to the latest version and try again",
        *,
        group: str = "",
        causes: list[Cause] | None = None,
        message: str | None = None,
    ) -> None:
        qualified = qualified_resource(resource, group)
        text = message or f'Operation cannot be fulfilled on {qualified} "{name}": {detail}'
        super().__init__(text, 409, "Conflict", name=name, group=group, kind=resource, causes=causes or [])


class Invalid(APIError):
    """422: `Deployment.apps "x" is invalid: spec.selector: Required value`, one cause per field."""

    def __init__(self, kind: str, name: str, causes: list[Cause], *, group: str = "") -> None:
        qualified = f"{kind}.{group}" if group else kind
        if not causes:
            causes = [Cause("FieldValueInvalid", "invalid value")]
        parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
        summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        super().__init__(
            f'{qualified} "{name}" is invalid: {summary}',
            422,
            "Invalid",
            name=name,
            group=group,
            kind=kind,
            causes=list(causes),
        )


class BadRequest(APIError):
    """400: the request itself cannot be understood."""

    def __init__(self, message: str, *, causes: list[Cause] | None = None) -> None:
        super().__init__(message, 400, "BadRequest", causes=causes or [])


class Unauthorized(APIError):
    """401: no valid credentials came with the request."""

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message, 401, "Unauthorized")


class Forbidden(APIError):
    """403: the user may not do this, or the namespace is terminating."""

    def __init__(self, message: str, *, resource: str = "", name: str = "", group: str = "") -> None:
        super().__init__(message, 403, "Forbidden", name=name, group=group, kind=resource)


class MethodNotAllowed(APIError):
    """405: the resource does not support this verb."""

    def __init__(self, message: str = "the server does not allow this method on the requested resource") -> None:
        super().__init__(message, 405, "MethodNotAllowed")


class NotAcceptable(APIError):
    """406: the client accepts no media type we can produce."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 406, "NotAcceptable")


class Gone(APIError):
    """410 Gone: the requested history no longer exists."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 410, "Gone")


class Expired(APIError):
    """410 Expired: a too-old resourceVersion or an expired continue token."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 410, "Expired")


class TooLarge(APIError):
    """413: the request body is over the limit."""

    def __init__(self, message: str = "Request entity too large: limit is 3145728") -> None:
        super().__init__(message, 413, "RequestEntityTooLarge")


class UnsupportedMediaType(APIError):
    """415: a content type (or patch type) the resource does not take."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 415, "UnsupportedMediaType")


class TooManyRequests(APIError):
    """429: try again later; `Retry-After` tells when (no header and no `retryAfterSeconds` for None)."""

    def __init__(self, message: str, *, retry_after: int | None = 1, causes: list[Cause] | None = None) -> None:
        super().__init__(message, 429, "TooManyRequests", retry_after=retry_after, causes=causes or [])


class InternalError(APIError):
    """500: a bug or an unexpected failure; the server keeps serving."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Internal error occurred: {message}", 500, "InternalError")


class ServiceUnavailable(APIError):
    """503: the server cannot serve this now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503, "ServiceUnavailable")


class Timeout(APIError):
    """504: the request did not finish in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 504, "Timeout")
