"""`pod_log_options`: decoding a `pods/log` query and validating it in upstream's words."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api import errors
from timoner.api.podlogs import PodLogOptions, pod_log_options


def q(**params: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in params.items()}


@pytest.mark.parametrize(("query", "expected"), [
    ({}, PodLogOptions()),
    (q(container="c", follow="", previous="true", timestamps="1"),
     PodLogOptions(container="c", follow=True, previous=True, timestamps=True)),
    # apimachinery's bool conversion: only 0/f/false/n/no (any case) are false.
    (q(follow="False", previous="N", timestamps="0"), PodLogOptions()),
    (q(follow="yes"), PodLogOptions(follow=True)),
    (q(tailLines="0", limitBytes="+12", sinceSeconds="30"),
     PodLogOptions(tail_lines=0, limit_bytes=12, since_seconds=30)),
    (q(sinceTime="2024-05-06T07:08:09Z"),
     PodLogOptions(since_time=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC))),
    (q(sinceTime="2024-05-06T09:08:09.75+02:00"),
     PodLogOptions(since_time=dt.datetime(2024, 5, 6, 7, 8, 9, 750000, tzinfo=dt.UTC))),
    (q(sinceTime=""), PodLogOptions(since_time=dt.datetime(1, 1, 1, tzinfo=dt.UTC))),  # Go's zero time
    (q(insecureSkipTLSVerifyBackend="true", unknown="x"), PodLogOptions()),
])
def test_decoding(query, expected):
    assert pod_log_options("p", query) == expected


@pytest.mark.parametrize(("query", "message"), [
    (q(tailLines="ten"), 'strconv.ParseInt: parsing "ten": invalid syntax'),
    (q(limitBytes=""), 'strconv.ParseInt: parsing "": invalid syntax'),
    (q(sinceSeconds="1.5"), 'strconv.ParseInt: parsing "1.5": invalid syntax'),
    (q(tailLines="9223372036854775808"), 'strconv.ParseInt: parsing "9223372036854775808": value out of range'),
    (q(sinceTime="yesterday"), 'parsing time "yesterday"'),
    (q(sinceTime="2024-05-06 07:08:09Z"), 'parsing time "2024-05-06 07:08:09Z"'),
    (q(sinceTime="2024-13-06T07:08:09Z"), 'parsing time "2024-13-06T07:08:09Z"'),
])
def test_undecodable_queries_are_bad_requests(query, message):
    with pytest.raises(errors.BadRequest) as caught:
        pod_log_options("p", query)
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(("query", "causes"), [
    (q(tailLines="-1"), [("FieldValueInvalid", "tailLines", "Invalid value: -1: must be greater than or equal to 0")]),
    (q(limitBytes="0"), [("FieldValueInvalid", "limitBytes", "Invalid value: 0: must be greater than 0")]),
    (q(limitBytes="-5"), [("FieldValueInvalid", "limitBytes", "Invalid value: -5: must be greater than 0")]),
    (q(sinceSeconds="0"), [("FieldValueInvalid", "sinceSeconds", "Invalid value: 0: must be greater than 0")]),
    (q(sinceSeconds="-1", sinceTime="2024-05-06T07:08:09Z"),  # both given: only that is reported
     [("FieldValueForbidden", "", "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")]),
    (q(stream="All"), [("FieldValueForbidden", "stream", "Forbidden: may not be specified")]),
    (q(tailLines="-1", limitBytes="0"),
     [("FieldValueInvalid", "tailLines", "Invalid value: -1: must be greater than or equal to 0"),
      ("FieldValueInvalid", "limitBytes", "Invalid value: 0: must be greater than 0")]),
])
def test_invalid_options_are_422_with_causes(query, causes):
    with pytest.raises(errors.Invalid) as caught:
        pod_log_options("web", query)
    status = caught.value.status()
    assert status["code"] == 422 and status["details"]["kind"] == "PodLogOptions"
    assert status["details"]["name"] == "web"
    assert [(c["reason"], c.get("field", ""), c["message"]) for c in status["details"]["causes"]] == causes
    assert status["message"].startswith('PodLogOptions "web" is invalid: ')


def test_node_query_is_upstreams_log_location_encoding():
    options = pod_log_options("p", q(container="c", follow="", previous="1", timestamps="true", tailLines="3",
                                     limitBytes="10", sinceTime="2024-05-06T09:08:09.75+02:00"))
    # Sorted keys (Go's url.Values.Encode); the time in whole seconds, RFC 3339; no container (it is in the path).
    assert options.node_query() == ("follow=true&limitBytes=10&previous=true&sinceTime=2024-05-06T07%3A08%3A09Z"
                                    "&tailLines=3&timestamps=true")
    assert PodLogOptions().node_query() == ""
    assert PodLogOptions(since_seconds=5).node_query() == "sinceSeconds=5"


def test_since_is_the_later_of_seconds_and_time():
    at = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert PodLogOptions().since(1000.0) is None
    assert PodLogOptions(since_seconds=10).since(1000.0) == 990.0
    assert PodLogOptions(since_time=at).since(0.0) == at.timestamp()
    assert PodLogOptions(since_time=at, since_seconds=10).since(at.timestamp() + 5) == at.timestamp()
    assert PodLogOptions(since_time=at, since_seconds=10).since(at.timestamp() + 50) == at.timestamp() + 40


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=1, max_value=2**40),
       st.booleans(), st.booleans())
def test_node_query_round_trips(tail, limit, follow, previous):
    options = PodLogOptions(tail_lines=tail, limit_bytes=limit, follow=follow, previous=previous)
    assert pod_log_options("p", parse_qs(options.node_query(), keep_blank_values=True)) == options
