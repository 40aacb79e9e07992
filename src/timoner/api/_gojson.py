"""How Go's decoders judge a JSON literal: base64 `[]byte`, `time.Parse` layouts, `resource.Quantity`.

Each function returns the error text the Go code would produce, or "" when
the value is accepted, so `timoner.api.structural` can quote upstream's exact
words in its 400 responses without carrying these details itself.
"""

from __future__ import annotations

import binascii
import re

__all__ = ["base64_error", "quantity_error", "time_error"]

_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_QUANTITY_SHAPE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
_QUANTITY_SUFFIX = re.compile(r"^(?:|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)$")
_QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


def base64_error(value: str) -> str:
    """Go's base64.StdEncoding verdict on a `[]byte` field's string (CR and LF are ignored)."""
    text = value.replace("\r", "").replace("\n", "") if ("\n" in value or "\r" in value) else value
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return _base64_offset(value)
    return ""


def quantity_error(text: str) -> str:
    """resource.ParseQuantity's verdict on a string (or a JSON number's literal)."""
    shape = _QUANTITY_SHAPE.match(text.strip())
    if shape is None or _QUANTITY_NUMBER.match(shape.group(1)) is None:
        return _QUANTITY_FORMAT_ERROR
    if _QUANTITY_SUFFIX.match(shape.group(2)) is None:
        return "unable to parse quantity's suffix"
    return ""


def _base64_offset(value: str) -> str:
    """Go's `illegal base64 data at input byte N`: the first misplaced byte, else the last partial quantum."""
    count = 0
    for index, char in enumerate(value):
        if char in "\r\n":
            continue
        if char == "=":
            rest = value[index:].replace("\r", "").replace("\n", "")
            if (rest == "=" and count % 4 == 3) or (rest == "==" and count % 4 == 2):
                break  # well-placed padding: the fault is the length
            return f"illegal base64 data at input byte {index}"
        if char not in _BASE64_ALPHABET:
            return f"illegal base64 data at input byte {index}"
        count += 1
    return f"illegal base64 data at input byte {count - count % 4}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digits(text: str) -> bool:
    return bool(text) and all("0" <= c <= "9" for c in text)


# time.RFC3339 and metav1.RFC3339Micro, as the chunks Go's time.Parse walks.
_LAYOUTS = {
    False: (
        "2006-01-02T15:04:05Z07:00",
        ("2006", "-", "01", "-", "02", "T", "15", ":", "04", ":", "05", "Z07:00"),
    ),
    True: (
        "2006-01-02T15:04:05.000000Z07:00",
        ("2006", "-", "01", "-", "02", "T", "15", ":", "04", ":", "05", ".000000", "Z07:00"),
    ),
}
_NUMBERS = {"01": ("month", 1, 12), "02": ("day", 0, 31), "15": ("hour", 0, 23), "04": ("minute", 0, 59),
            "05": ("second", 0, 59)}  # fmt: skip


def time_error(value: str, *, micro: bool) -> str:
    """Go's `time.Parse(time.RFC3339 or RFC3339Micro, value)` error, as metav1.Time/MicroTime report it."""
    layout, chunks = _LAYOUTS[micro]
    head = f"parsing time {_quote(value)}"
    got: dict[str, int] = {}
    rest = value
    for chunk in chunks:
        hold = rest
        bad = f"{head} as {_quote(layout)}: cannot parse {_quote(hold)} as {_quote(chunk)}"
        if chunk == "2006":
            if len(rest) < 4 or not _digits(rest[:4]):
                return bad
            got["year"], rest = int(rest[:4]), rest[4:]
        elif chunk in _NUMBERS:
            role, low, high = _NUMBERS[chunk]
            width = 2 if len(rest) > 1 and _digits(rest[:2]) else 1
            if not _digits(rest[:1]) or (width == 1 and chunk != "15"):  # only the hour may be one digit
                return bad
            got[role], rest = int(rest[:width]), rest[width:]
            if not low <= got[role] <= high:
                return f"{head}: {role} out of range"
            if chunk == "05" and not micro and len(rest) >= 2 and rest[0] in ".," and _digits(rest[1]):
                end = 2
                while end < len(rest) and _digits(rest[end]):
                    end += 1
                rest = rest[end:]
        elif chunk == ".000000":
            if len(rest) < 7 or rest[0] not in ".," or not _digits(rest[1:7]):
                return bad
            rest = rest[7:]
        elif chunk == "Z07:00":
            if rest[:1] == "Z":
                rest = rest[1:]
                continue
            if len(rest) < 6 or rest[3] != ":" or not _digits(rest[1:3]) or not _digits(rest[4:6]):
                return bad
            if int(rest[1:3]) > 24 or int(rest[4:6]) > 60:
                return f"{head}: time zone offset {'hour' if int(rest[1:3]) > 24 else 'minute'} out of range"
            if rest[0] not in "+-":
                return bad
            rest = rest[6:]
        elif rest.startswith(chunk):
            rest = rest[len(chunk) :]
        else:
            return bad
    if rest:
        return f"{head}: extra text: {_quote(rest)}"
    month, year = got["month"], got["year"]
    days = 29 if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else (
        (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1])  # fmt: skip
    if not 1 <= got["day"] <= days:
        return f"{head}: day out of range"
    return ""
