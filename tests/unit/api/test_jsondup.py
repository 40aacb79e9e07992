from __future__ import annotations

import pytest

from timoner.api.jsondup import duplicate_fields


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"a": 1, "b": 2}', []),
    (b'{"a": 1, "a": 2}', ["a"]),
    (b'{"metadata": {"name": "x", "name": "y"}}', ["metadata.name"]),
    (b'{"spec": {"containers": [{"name": "a"}, {"image": "i", "image": "j"}]}}', ["spec.containers[1].image"]),
    (b'{"a": {"b": 1}, "a": {"c": 2}}', ["a"]),
    (b'not json', []),
])
def test_duplicate_fields(raw, expected):
    assert duplicate_fields(raw) == expected
