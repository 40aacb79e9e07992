"""The Status → exception mapping: every class the server raises comes back as itself, verbatim."""

from __future__ import annotations

import pytest

from timoner.api import errors
from timoner.client import error_from_status

ROUND_TRIP = [
    errors.NotFound("deployments", "web", group="apps"),
    errors.AlreadyExists("pods", "p"),
    errors.Conflict("configmaps", "c"),
    errors.Invalid("Deployment", "web", [errors.Cause("FieldValueRequired", "Required value", "spec.selector"),
                                         errors.Cause("FieldValueInvalid", "bad", "spec.replicas")],
                   group="apps"),
    errors.BadRequest("unable to parse requirement"),
    errors.Unauthorized(),
    errors.Forbidden('pods is forbidden: User "u" cannot list', resource="pods"),
    errors.MethodNotAllowed(),
    errors.NotAcceptable("only json"),
    errors.Gone("gone"),
    errors.Expired("too old resource version: 5 (90)"),
    errors.TooLarge(),
    errors.UnsupportedMediaType("the body of the request was in an unknown format"),
    errors.TooManyRequests("Cannot evict pod", retry_after=10,
                           causes=[errors.Cause("DisruptionBudget", "needs 1 healthy")]),
    errors.InternalError("boom"),
    errors.ServiceUnavailable("later"),
    errors.Timeout("slow"),
]


@pytest.mark.parametrize("original", ROUND_TRIP, ids=lambda e: type(e).__name__)
def test_status_round_trips_to_the_same_exception(original):
    mapped = error_from_status(original.status())
    assert type(mapped) is type(original)
    assert mapped.status() == original.status()
    assert str(mapped) == original.message


@pytest.mark.parametrize(("code", "reason", "cls"), [
    (404, "", errors.NotFound),
    (409, "", errors.Conflict),
    (409, "AlreadyExists", errors.AlreadyExists),
    (410, "", errors.Gone),
    (410, "Expired", errors.Expired),
    (422, "", errors.Invalid),
    (429, "", errors.TooManyRequests),
    (418, "", errors.APIError),
    (400, "SomethingNew", errors.BadRequest),
])
def test_class_chosen_by_reason_then_code(code, reason, cls):
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "m", "code": code}
    if reason:
        body["reason"] = reason
    mapped = error_from_status(body)
    assert type(mapped) is cls
    assert mapped.code == code and mapped.reason == reason


def test_non_status_body_uses_http_code_and_retry_after_header():
    mapped = error_from_status("<html>bad gateway</html>", code=503, retry_after=7)
    assert isinstance(mapped, errors.ServiceUnavailable)
    assert mapped.code == 503 and mapped.retry_after == 7
    assert "bad gateway" in mapped.message
    # details.retryAfterSeconds wins over the header.
    status = errors.TooManyRequests("slow down", retry_after=3).status()
    assert error_from_status(status, code=429, retry_after=9).retry_after == 3
