"""Quantities: tables after upstream's quantity_test.go, plus round-trip properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.quantity import (
    Quantity,
    QuantityFormat,
    canonicalize_quantity,
    format_quantity,
    is_valid_quantity,
    parse_quantity,
)

CANONICAL = [
    ("0", "0"),
    ("0n", "0"),
    ("0u", "0"),
    ("0m", "0"),
    ("0Ki", "0"),
    ("0k", "0"),
    ("0Mi", "0"),
    ("-0", "0"),
    ("1", "1"),
    ("+1", "1"),
    ("-1", "-1"),
    ("1000m", "1"),
    ("1.0", "1"),
    ("1.5", "1500m"),
    ("0.5", "500m"),
    ("0.1", "100m"),
    ("100m", "100m"),
    ("9.5", "9500m"),
    ("1000", "1k"),
    ("1000000", "1M"),
    ("1000001", "1000001"),
    ("1k", "1k"),
    ("1M", "1M"),
    ("1G", "1G"),
    ("1.G", "1G"),
    ("1024", "1024"),
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    ("100Mi", "100Mi"),
    ("1000Mi", "1000Mi"),
    ("1024Mi", "1Gi"),
    ("1.5Gi", "1536Mi"),
    ("0.5Ki", "512"),
    ("1.5Ki", "1536"),
    ("-1Ki", "-1Ki"),
    ("1n", "1n"),
    ("1u", "1u"),
    ("0.1n", "1n"),
    ("1.1n", "2n"),
    ("-1.1n", "-2n"),
    ("1e3", "1e3"),
    ("1E3", "1e3"),
    ("1e-3", "1e-3"),
    ("12e6", "12e6"),
    ("1.5e3", "1500"),
    ("10E", "10E"),
    ("100000000000000000000", "9223372036854775807"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical_form(text: str, canonical: str) -> None:
    assert canonicalize_quantity(text) == canonical
    # The canonical form is a fixed point.
    assert canonicalize_quantity(canonical) == canonical


VALUES = [
    ("100m", Decimal("0.1")),
    ("1.5Gi", Decimal(1610612736)),
    ("2Ki", Decimal(2048)),
    ("1e3", Decimal(1000)),
    ("5", Decimal(5)),
    ("0.1n", Decimal("1e-9")),
    (1.5, Decimal("1.5")),
    (100, Decimal(100)),
    (1e-05, Decimal("0.00001")),
]


@pytest.mark.parametrize(("text", "value"), VALUES)
def test_parse_value(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value


BAD = [
    ("", "quantities must match the regular expression"),
    ("abc", "quantities must match the regular expression"),
    ("1 ", "quantities must match the regular expression"),
    (" 1", "quantities must match the regular expression"),
    ("1.2.3", "quantities must match the regular expression"),
    ("1K", "unable to parse quantity's suffix"),
    ("1Kii", "unable to parse quantity's suffix"),
    ("1e", "unable to parse quantity's suffix"),
    ("1ee3", "unable to parse quantity's suffix"),
    ("--1", "unable to parse quantity's suffix"),
    ("1i", "unable to parse quantity's suffix"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_quantities(text: str, message: str) -> None:
    assert not is_valid_quantity(text)
    with pytest.raises(ValueError, match=message):
        parse_quantity(text)


@pytest.mark.parametrize("value", [True, None, float("nan"), float("inf"), [1]])
def test_non_numbers_are_invalid(value: object) -> None:
    assert not is_valid_quantity(value)


FORMATS = [
    (Decimal("1.5"), False, "1500m"),
    (Decimal(1610612736), True, "1536Mi"),
    (Decimal(1610612736), False, "1610612736"),
    (Decimal("0.5"), True, "500m"),
    (Decimal("1536.5"), True, "1536500m"),
    (Decimal(1073741824), True, "1Gi"),
    (Decimal(0), True, "0"),
    (Decimal("1e-12"), False, "1n"),
]


@pytest.mark.parametrize(("value", "binary", "text"), FORMATS)
def test_format(value: Decimal, binary: bool, text: str) -> None:
    assert format_quantity(value, binary=binary) == text


def test_quantity_keeps_format() -> None:
    q = Quantity.parse("1e3")
    assert q.format is QuantityFormat.DECIMAL_EXPONENT
    assert str(q) == "1e3"
    assert Quantity.parse("2Gi").format is QuantityFormat.BINARY_SI


nano_values = st.integers(min_value=-(10**18), max_value=10**18).map(lambda n: Decimal(n).scaleb(-9))


@given(nano_values, st.booleans())
def test_format_parse_round_trip(value: Decimal, binary: bool) -> None:
    text = format_quantity(value, binary=binary)
    assert parse_quantity(text) == value
    if not binary:
        # A binary value printed without suffix reparses as decimal SI, so only decimal is a fixed point.
        assert canonicalize_quantity(text) == text


@given(st.integers(min_value=0, max_value=2**53))
def test_binary_round_trip_of_integers(n: int) -> None:
    assert parse_quantity(format_quantity(Decimal(n), binary=True)) == n
