"""The errors patch engines raise, shaped like kube-apiserver's answers.

Upstream answers a JSON patch that cannot be applied, and a strategic merge
patch that breaks a structural rule (a list of lists, `$retainKeys` not
matching the patch), with `errors.NewGenericServerResponse(422, ...)`: reason
`Invalid`, the fixed message "the server rejected our request due to an
error in our request" and empty details. The library's own explanation never
reaches the client; `PatchFailed.detail` keeps it for logs and tests.

Strategic merge errors that upstream does not classify (a list element
without its merge key, an unknown `$patch` value) escape as plain Go errors
and become a 500 with no reason and the error text as message;
`unclassified()` builds that.
"""

from __future__ import annotations

from timoner.api.errors import APIError, Invalid

__all__ = ["GENERIC_INVALID_MESSAGE", "PatchFailed", "unclassified"]

GENERIC_INVALID_MESSAGE = "the server rejected our request due to an error in our request"


class PatchFailed(Invalid):
    """422 Invalid with upstream's generic message; `detail` says what actually went wrong."""

    def __init__(self, detail: str) -> None:
        APIError.__init__(self, GENERIC_INVALID_MESSAGE, 422, "Invalid")
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message}: {self.detail}"


def unclassified(message: str) -> APIError:
    """A 500 without reason carrying `message` verbatim, as upstream answers unknown Go errors."""
    return APIError(message, 500, "")
