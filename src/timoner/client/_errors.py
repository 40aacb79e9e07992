"""The inverse of `APIError.status()`: a `Status` body back into the matching exception.

Client code catches the same exception classes the server raises
(`NotFound`, `Conflict`, `Invalid`, ...), so one mapping sits at the HTTP
boundary. The exception keeps the server's message, reason, details and
causes verbatim instead of re-rendering them through each class's
constructor: the server's wording is the one people grep for.

The class is chosen by `reason` first (409 is both `AlreadyExists` and
`Conflict`, 410 both `Gone` and `Expired`), then by code, then falls back to
the base `APIError` for reasons this version does not know.
"""

from __future__ import annotations

from typing import Any

from timoner.api import errors
from timoner.api.errors import APIError, Cause

__all__ = ["error_from_status"]

_BY_REASON: dict[str, type[APIError]] = {
    "NotFound": errors.NotFound,
    "AlreadyExists": errors.AlreadyExists,
    "Conflict": errors.Conflict,
    "Invalid": errors.Invalid,
    "BadRequest": errors.BadRequest,
    "Unauthorized": errors.Unauthorized,
    "Forbidden": errors.Forbidden,
    "MethodNotAllowed": errors.MethodNotAllowed,
    "NotAcceptable": errors.NotAcceptable,
    "Gone": errors.Gone,
    "Expired": errors.Expired,
    "RequestEntityTooLarge": errors.TooLarge,
    "UnsupportedMediaType": errors.UnsupportedMediaType,
    "TooManyRequests": errors.TooManyRequests,
    "InternalError": errors.InternalError,
    "ServiceUnavailable": errors.ServiceUnavailable,
    "Timeout": errors.Timeout,
}

_BY_CODE: dict[int, type[APIError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    406: errors.NotAcceptable,
    409: errors.Conflict,
    410: errors.Gone,
    413: errors.TooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.Invalid,
    429: errors.TooManyRequests,
    500: errors.InternalError,
    503: errors.ServiceUnavailable,
    504: errors.Timeout,
}


def error_from_status(status: Any, *, code: int | None = None, retry_after: int | None = None) -> APIError:
    """The exception for a failed request: `status` is the decoded body (a `Status`, or anything else).

    `code` is the HTTP status when the body does not carry one (or is not a
    Status at all, e.g. a proxy's HTML page); `retry_after` comes from the
    `Retry-After` header and loses to `details.retryAfterSeconds`.
    """
    if not isinstance(status, dict) or status.get("kind") != "Status":
        text = status if isinstance(status, str) else ""
        status = {"message": text.strip() or f"the server responded with HTTP {code}", "code": code}
    http_code = status.get("code") or code or 500
    reason = status.get("reason") or ""
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    cls = _BY_REASON.get(reason) or _BY_CODE.get(http_code, APIError)
    causes = [
        Cause(str(c.get("reason", "")), str(c.get("message", "")), str(c.get("field", "")))
        for c in details.get("causes") or ()
        if isinstance(c, dict)
    ]
    after = details.get("retryAfterSeconds", retry_after)
    exc = cls.__new__(cls)
    # Bypass the subclass constructors (they render their own message); fill the dataclass fields.
    APIError.__init__(
        exc,
        message=str(status.get("message") or reason or f"HTTP {http_code}"),
        code=int(http_code),
        reason=reason,
        name=str(details.get("name", "")),
        group=details.get("group"),
        kind=str(details.get("kind", "")),
        uid=str(details.get("uid", "")),
        causes=causes,
        retry_after=int(after) if after is not None else None,
    )
    return exc
