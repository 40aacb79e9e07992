"""The Kubernetes CEL libraries, as functions for the `cel` (common-expression-language) engine.

The engine implements the CEL core (macros, `size`, `contains`, `startsWith`,
`endsWith`, `matches`, conversions, timestamps, optionals); cel-go's extensions
(strings, sets, lists, base64) are in `_cel_ext.py`. What Kubernetes adds on top is
here: the list library (`isSorted`, `sum`, `min`, `max`, `indexOf`,
`lastIndexOf` on lists), the regex library (`find`, `findAll`), the URL, quantity,
IP and CIDR libraries, and the strings extension's `format`. The engine calls a
method `x.f(a)` as `f(x, a)`, so one Python function serves both forms and
dispatches on the receiver's type (`indexOf` of a string and of a list).

The engine cannot carry foreign objects, so a URL is the map `{"@url": text}`, a
quantity `{"@quantity": canonical}`, an IP `{"@ip": text}` and a CIDR `{"@cidr": text}`:
`url(x).getHost()`, `quantity(a).isLessThan(quantity(b))` and `cidr(c).containsIP(x)`
work, and so does comparing them with `==`; `string(ip(x))` does not.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from types import ModuleType
from typing import Any

from timoner.api.crd._cel_ext import EXT_FUNCTIONS, ExtError, string_index_of, string_last_index_of
from timoner.api.quantity import canonicalize_quantity, format_quantity, is_valid_quantity, parse_quantity

__all__ = [
    "BUILTIN_FUNCTIONS", "K8S_FUNCTIONS", "NAMESPACES", "TYPE_NAMES", "callbacks", "functions_for", "runtime_message",
]


CELError = ExtError  # an evaluation error raised by a library function, in cel-go's words


# --- lists ----------------------------------------------------------------------------------------


def _comparable(items: list[Any], name: str) -> list[Any]:
    kinds = {type(v) for v in items}
    if len(kinds) > 1 and not kinds <= {int, float}:
        raise CELError(f"no such overload: {name}")
    return items


def _is_sorted(items: list[Any]) -> bool:
    _comparable(items, "isSorted")
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _sum(items: list[Any]) -> Any:
    if not items:
        return 0
    total = items[0]
    for v in items[1:]:
        total = total + v
    return total


def _min(*args: Any) -> Any:
    items = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not items:
        raise CELError("min called on empty list")
    return min(_comparable(items, "min"))


def _max(*args: Any) -> Any:
    items = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not items:
        raise CELError("max called on empty list")
    return max(_comparable(items, "max"))


def _equal(a: Any, b: Any) -> bool:
    # CEL equality: no bool/int coercion, but int and double compare numerically.
    return a == b and (isinstance(a, bool) == isinstance(b, bool))


def _index_of(receiver: Any, item: Any, offset: int = 0) -> int:
    if isinstance(receiver, list):
        for i, v in enumerate(receiver):
            if _equal(v, item):
                return i
        return -1
    return string_index_of(receiver, item, offset)


def _last_index_of(receiver: Any, item: Any, offset: int | None = None) -> int:
    if isinstance(receiver, list):
        for i in range(len(receiver) - 1, -1, -1):
            if _equal(receiver[i], item):
                return i
        return -1
    return string_last_index_of(receiver, item, offset)


# --- regex ----------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise CELError(f"{pattern!r}: {e}") from None


def _find(text: str, pattern: str) -> str:
    m = _regex(pattern).search(text)
    return m.group(0) if m else ""


def _find_all(text: str, pattern: str, limit: int = -1) -> list[str]:
    out = [m.group(0) for m in _regex(pattern).finditer(text)]
    return out if limit < 0 else out[:limit]


# --- URLs -----------------------------------------------------------------------------------------


def _parse_url(text: str) -> urllib.parse.SplitResult | None:
    # Go's url.ParseRequestURI: an absolute URI or an absolute path; no fragments allowed.
    if not isinstance(text, str) or not text or "#" in text:
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme):
            return None
        return parts
    return parts if text.startswith("/") else None


def _url(text: str) -> dict[str, str]:
    if _parse_url(text) is None:
        raise CELError(f"URL parse error during conversion from string: parse {text!r}: invalid URI for request")
    return {"@url": text}


def _is_url(text: str) -> bool:
    return _parse_url(text) is not None


def _url_parts(u: Any) -> urllib.parse.SplitResult:
    if not isinstance(u, dict) or "@url" not in u:
        raise CELError("no such overload")
    parts = _parse_url(u["@url"])
    assert parts is not None
    return parts


def _get_host(u: Any) -> str:
    netloc = _url_parts(u).netloc.rpartition("@")[2]
    return netloc


def _get_hostname(u: Any) -> str:
    host = _get_host(u)
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rpartition(":")[0] if ":" in host else host


def _get_port(u: Any) -> str:
    host = _get_host(u)
    if host.startswith("["):
        rest = host[host.find("]") + 1 :]
        return rest[1:] if rest.startswith(":") else ""
    return host.rpartition(":")[2] if ":" in host else ""


def _get_query(u: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(_url_parts(u).query, keep_blank_values=True)


# --- quantities -----------------------------------------------------------------------------------


def _quantity(text: str) -> dict[str, str]:
    if not is_valid_quantity(text):
        raise CELError("quantities must match the regular expression "
                       "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return {"@quantity": canonicalize_quantity(text)}


def _q(value: Any) -> Decimal:
    if isinstance(value, dict) and "@quantity" in value:
        return parse_quantity(value["@quantity"])
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise CELError("no such overload")


def _q_new(value: Decimal, like: Any) -> dict[str, str]:
    binary = isinstance(like, dict) and "i" in like.get("@quantity", "")
    return {"@quantity": format_quantity(value, binary=binary)}


def _compare(a: Any, b: Any) -> int:
    x, y = _q(a), _q(b)
    return (x > y) - (x < y)


def _as_integer(q: Any) -> int:
    v = _q(q)
    if v != v.to_integral_value() or not -(2**63) <= v < 2**63:
        raise CELError("cannot convert value to integer")
    return int(v)


def _is_integer(q: Any) -> bool:
    v = _q(q)
    return v == v.to_integral_value() and -(2**63) <= v < 2**63


# --- IP addresses and CIDRs (Kubernetes 1.31+) -------------------------------------------------------


def _parse_ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Kubernetes refuses zones and IPv4-mapped IPv6 addresses.
    if not isinstance(text, str) or "%" in text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return None
    return addr


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, dict) and "@ip" in value:
        return ipaddress.ip_address(value["@ip"])
    raise CELError("no such overload")


def _to_ip(text: str) -> dict[str, str]:
    addr = _parse_ip(text)
    if addr is None:
        raise CELError(f"IP Address {text!r} parse error during conversion from string: ParseAddr({text!r}): "
                       "unable to parse IP")
    return {"@ip": str(addr)}


def _parse_cidr(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(text, str) or "/" not in text or "%" in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _cidr(value: Any) -> tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if isinstance(value, dict) and "@cidr" in value:
        text = value["@cidr"]
        net = _parse_cidr(text)
        assert net is not None
        return text, net
    raise CELError("no such overload")


def _to_cidr(text: str) -> dict[str, str]:
    if _parse_cidr(text) is None:
        raise CELError(f"network address parse error during conversion from string: {text!r}")
    return {"@cidr": text}


def _contains_ip(c: Any, ip: Any) -> bool:
    addr = _parse_ip(ip) if isinstance(ip, str) else _ip(ip)
    if addr is None:
        raise CELError("IP Address parse error")
    return addr in _cidr(c)[1]


def _contains_cidr(c: Any, other: Any) -> bool:
    inner = _parse_cidr(other) if isinstance(other, str) else _cidr(other)[1]
    if inner is None:
        raise CELError("network address parse error")
    outer = _cidr(c)[1]
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _cidr_ip(c: Any) -> dict[str, str]:
    text, _ = _cidr(c)
    return {"@ip": str(ipaddress.ip_address(text.split("/", 1)[0]))}


def _masked(c: Any) -> dict[str, str]:
    return {"@cidr": str(_cidr(c)[1])}


def _ip_is_canonical(text: str) -> bool:
    addr = _parse_ip(text)
    if addr is None:
        raise CELError(f"IP Address {text!r} parse error during conversion from string")
    return str(addr) == text


# --- the registry ---------------------------------------------------------------------------------

_LINK_LOCAL_MULTICAST = {4: ipaddress.ip_network("224.0.0.0/24"), 6: ipaddress.ip_network("ff02::/16")}

K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _min,
    "max": _max,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "find": _find,
    "findAll": _find_all,
    "url": _url,
    "isURL": _is_url,
    "getScheme": lambda u: _url_parts(u).scheme,
    "getHost": _get_host,
    "getHostname": _get_hostname,
    "getPort": _get_port,
    "getEscapedPath": lambda u: _url_parts(u).path,
    "getQuery": _get_query,
    "quantity": _quantity,
    "isQuantity": lambda s: isinstance(s, str) and is_valid_quantity(s),
    "sign": lambda q: _compare(q, 0),
    "isInteger": _is_integer,
    "asInteger": _as_integer,
    "asApproximateFloat": lambda q: float(_q(q)),
    "compareTo": _compare,
    "isGreaterThan": lambda a, b: _compare(a, b) > 0,
    "isLessThan": lambda a, b: _compare(a, b) < 0,
    "add": lambda a, b: _q_new(_q(a) + _q(b), a),
    "isIP": lambda s: _parse_ip(s) is not None,
    "ip": lambda v: _cidr_ip(v) if isinstance(v, dict) else _to_ip(v),
    "ip.isCanonical": _ip_is_canonical,
    "family": lambda v: _ip(v).version,
    "isUnspecified": lambda v: _ip(v).is_unspecified,
    "isLoopback": lambda v: _ip(v).is_loopback,
    "isLinkLocalMulticast": lambda v: _ip(v).is_multicast and _ip(v) in _LINK_LOCAL_MULTICAST[_ip(v).version],
    "isLinkLocalUnicast": lambda v: _ip(v).is_link_local,
    "isGlobalUnicast": lambda v: not (
        _ip(v).is_unspecified or _ip(v).is_loopback or _ip(v).is_multicast or _ip(v).is_link_local
        or str(_ip(v)) == "255.255.255.255"
    ),
    "isCIDR": lambda s: _parse_cidr(s) is not None,
    "cidr": _to_cidr,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "prefixLength": lambda c: _cidr(c)[1].prefixlen,
    "masked": _masked,
    "sub": lambda a, b: _q_new(_q(a) - _q(b), a),
}

# What the engine itself knows (core functions, timestamp/duration accessors, optionals); with the
# callbacks below, any other function name is an undeclared reference.
BUILTIN_FUNCTIONS = frozenset(
    "size contains startsWith endsWith matches int uint double string bytes timestamp duration dyn "
    "type has all exists exists_one map filter getFullYear getMonth getDayOfYear getDayOfMonth getDate "
    "getDayOfWeek getHours getMinutes getSeconds getMilliseconds hasValue value orValue or of none "
    "ofNonZeroValue".split()
)
NAMESPACES = frozenset({"optional", "strings", "sets", "lists", "base64", "ip"})
TYPE_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"})


@lru_cache(maxsize=1)
def engine() -> ModuleType:
    """The engine: the `cel` package's extension module, loaded without the package's `__init__`.

    `import cel` also imports the package's command-line front end (typer, rich,
    prompt_toolkit): ~0.3 s and ~28 MB of an API server's memory, for nothing. The
    extension module (`cel/cel.*.so`) is the whole engine, so it is loaded on its own,
    registered as `cel.cel` (where the package would put it, so a later `import cel`
    reuses it). Should the layout ever differ, the package is imported after all.
    """
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("cel")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(location, "cel" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("cel.cel", path)
                module = importlib.util.module_from_spec(importlib.util.spec_from_loader("cel.cel", loader))
                loader.exec_module(module)
                sys.modules["cel.cel"] = module
                _quiet()
                return module
    import cel  # pragma: no cover - a different package layout

    _quiet()
    return cel


def _quiet() -> None:
    # The engine logs every failing callback at WARNING on the "cel" logger; each failure
    # already becomes the rule's "... evaluating rule" error, so the log line is noise.
    logging.getLogger("cel").setLevel(logging.ERROR)


@lru_cache(maxsize=1)
def callbacks() -> dict[str, Callable[..., Any]]:
    """Every function the engine calls back into Python for: cel-go's extensions, then Kubernetes'."""
    return {**EXT_FUNCTIONS, **K8S_FUNCTIONS, "format": _format}


def functions_for(names: frozenset[str], namespaces: frozenset[str]) -> dict[str, Callable[..., Any]]:
    """The callbacks a program needs: registering only those keeps its context cheap to build."""
    available = callbacks()
    out = {n: available[n] for n in names if n in available}
    for ns in namespaces:
        out.update({n: f for n, f in available.items() if n.startswith(ns + ".")})
    return out


def _format(template: str, args: list[Any]) -> str:
    """cel-go's strings `format`: %s %d %f %e %x %X %o %b %%, with an optional precision."""
    out, i, n = [], 0, 0
    while i < len(template):
        ch = template[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        m = re.match(r"%(?:\.(\d+))?([sdfeExXob%])", template[i:])
        if not m:
            raise CELError(f"could not parse formatting clause: unrecognized formatting clause at {i}")
        i += m.end()
        verb, precision = m.group(2), m.group(1)
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            raise CELError(f"index {n} out of range")
        arg = args[n]
        n += 1
        if verb == "s":
            out.append(_format_s(arg))
        elif verb == "d":
            out.append(str(int(arg)))
        elif verb in "fe":
            out.append(f"{float(arg):.{int(precision) if precision else 6}{verb}}")
        elif verb in "xX":
            text = arg.encode().hex() if isinstance(arg, str) else format(int(arg), "x")
            out.append(text.upper() if verb == "X" else text)
        elif verb == "o":
            out.append(format(int(arg), "o"))
        else:
            out.append(format(int(arg), "b"))
    return "".join(out)


def _format_s(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_format_s(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_format_s(k)}: {_format_s(v)}" for k, v in value.items()) + "}"
    return str(value)


_FUNCTION_ERROR = re.compile(r"^Function '([^']*)' error: (.*?)(?:\. Check function arguments and their types\.)?$", re.S)


def runtime_message(exc: BaseException) -> str:
    """An engine exception in cel-go's words (`no such key: x`, `no such overload`, ...)."""
    text = str(exc)
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else text}"
    if isinstance(exc, ZeroDivisionError):
        return "modulus by zero" if "modul" in text else "division by zero"
    if isinstance(exc, OverflowError):
        return "integer overflow"
    if isinstance(exc, TypeError) or text.startswith("Undefined variable or function"):
        # Names are checked when the rule compiles, so an unknown function at run time is a
        # method the receiver's type lacks (`1.size()`): cel-go's no such overload.
        return "no such overload"
    text = " ".join(text.split())  # the engine's regex errors span lines; a cause message must not
    m = _FUNCTION_ERROR.match(text)
    if m:
        detail = m.group(2)
        if "Python function call failed: " in detail:
            detail = detail.split("Python function call failed: ", 1)[1]
            name, _, rest = detail.partition(": ")
            detail = rest if name in ("ExtError", "KeyError", "ValueError", "TypeError") else detail
            if name in ("TypeError", "AttributeError"):
                return "no such overload"
        return detail
    return text
