"""`PodLogOptions`: the query of a `pods/log` request, decoded and validated as upstream does.

Both ends of `kubectl logs` read it: the API server (upstream's `LogREST.Get`,
which then re-encodes the options for the kubelet as `LogLocation` does) and
the node agent (kubelet's `getContainerLogs`). Decoding follows
apimachinery's query-parameter conversions: a flag is true unless it is one
of `0`, `f`, `false`, `n`, `no` (so `?follow` alone is true); a number that
does not parse is 400 with Go's `strconv.ParseInt` message; `sinceTime` is
RFC 3339 and an empty one is the zero time. Validation is upstream's
`ValidatePodLogOptions` (v1.32), 422 with one cause per problem; `stream`
belongs to the alpha `PodLogsQuerySplitStreams` gate, off by default, so it
may not be given. Unknown parameters are ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from timoner.api.errors import BadRequest, Cause, Invalid

__all__ = ["PodLogOptions", "pod_log_options", "validate_pod_log_options"]

_FALSE = ("0", "f", "false", "n", "no")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # Go's time.Time{}
_INT64 = 1 << 63


@dataclass(frozen=True, slots=True)
class PodLogOptions:
    """The options of one log request; `since_time` is timezone-aware (UTC)."""

    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: dt.datetime | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None

    def since(self, now: float) -> float | None:
        """The earliest entry time (UNIX seconds) to return, as kubelet's `NewLogOptions` works it out."""
        since = now - self.since_seconds if self.since_seconds is not None else None
        if self.since_time is not None:
            at = self.since_time.timestamp()
            since = at if since is None or at > since else since
        return since

    def node_query(self) -> str:
        """The query string for the node agent, built as upstream's `LogLocation` builds it (sorted keys)."""
        params: dict[str, str] = {}
        if self.follow:
            params["follow"] = "true"
        if self.previous:
            params["previous"] = "true"
        if self.timestamps:
            params["timestamps"] = "true"
        if self.since_seconds is not None:
            params["sinceSeconds"] = str(self.since_seconds)
        if self.since_time is not None:
            # time.RFC3339: whole seconds, as every client sends it.
            params["sinceTime"] = self.since_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.tail_lines is not None:
            params["tailLines"] = str(self.tail_lines)
        if self.limit_bytes is not None:
            params["limitBytes"] = str(self.limit_bytes)
        return urlencode(sorted(params.items()))


def pod_log_options(name: str, query: Mapping[str, Sequence[str]]) -> PodLogOptions:
    """Decode and validate `query`; raises `BadRequest` (400) when it does not decode, `Invalid` (422)."""
    options = PodLogOptions(
        container=_first(query, "container"),
        follow=_flag(query, "follow"),
        previous=_flag(query, "previous"),
        timestamps=_flag(query, "timestamps"),
        since_seconds=_int64(query, "sinceSeconds"),
        since_time=_time(query, "sinceTime"),
        tail_lines=_int64(query, "tailLines"),
        limit_bytes=_int64(query, "limitBytes"),
    )
    causes = validate_pod_log_options(options)
    if _first(query, "stream") is not None:
        causes.append(Cause("FieldValueForbidden", "Forbidden: may not be specified", "stream"))
    if causes:
        raise Invalid("PodLogOptions", name, causes)
    return options


def validate_pod_log_options(options: PodLogOptions) -> list[Cause]:
    """Upstream's `ValidatePodLogOptions` without the gated `stream` field, in `field.Error` wording."""
    causes = []
    if options.tail_lines is not None and options.tail_lines < 0:
        causes.append(_invalid("tailLines", options.tail_lines, "must be greater than or equal to 0"))
    if options.limit_bytes is not None and options.limit_bytes < 1:
        causes.append(_invalid("limitBytes", options.limit_bytes, "must be greater than 0"))
    if options.since_seconds is not None and options.since_time is not None:
        causes.append(Cause("FieldValueForbidden",
                            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif options.since_seconds is not None and options.since_seconds < 1:
        causes.append(_invalid("sinceSeconds", options.since_seconds, "must be greater than 0"))
    return causes


def _invalid(field: str, value: int, detail: str) -> Cause:
    # What `validation._field.invalid` says for an integer; not imported, so that the node agent,
    # which decodes these options too, does not load every kind's validation.
    return Cause("FieldValueInvalid", f"Invalid value: {value}: {detail}", field)


def _first(query: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _flag(query: Mapping[str, Sequence[str]], key: str) -> bool:
    value = _first(query, key)
    return value is not None and value.lower() not in _FALSE


def _int64(query: Mapping[str, Sequence[str]], key: str) -> int | None:
    value = _first(query, key)
    if value is None:
        return None
    # strconv.ParseInt(s, 10, 64): an optional sign and decimal digits only.
    if not re.fullmatch(r"[+-]?\d+", value):
        raise BadRequest(f'strconv.ParseInt: parsing "{value}": invalid syntax')
    number = int(value)
    if not -_INT64 <= number < _INT64:
        raise BadRequest(f'strconv.ParseInt: parsing "{value}": value out of range')
    return number


def _time(query: Mapping[str, Sequence[str]], key: str) -> dt.datetime | None:
    value = _first(query, key)
    if value is None:
        return None
    if value in ("", "null"):
        return _ZERO_TIME
    if not _RFC3339.fullmatch(value):
        raise BadRequest(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse "{value}" as RFC 3339')
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError as exc:  # a month 13, a day 32: well formed, out of range
        raise BadRequest(f'parsing time "{value}": {exc}') from None
