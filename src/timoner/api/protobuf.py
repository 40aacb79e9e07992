"""Decoding of Kubernetes protobuf request bodies into the JSON objects they stand for.

kubectl's typed clients send built-in kinds as
`application/vnd.kubernetes.protobuf` and do not retry in JSON, so the API
server must read that encoding; it always answers in JSON, which kubectl
accepts. `decode_protobuf()` turns such a body into the plain dict kubectl
would have sent as JSON.

The wire format: the magic `k8s\\x00`, then a `runtime.Unknown` envelope
whose `typeMeta` names the object's apiVersion and kind and whose `raw`
holds the serialized object message (`k8s.io.api.apps.v1.Deployment` ...).
The schemas are the `generated.proto` descriptors kubectl itself embeds,
extracted once by `tools/extract_k8s_protos.py` into
`_data/kubernetes-protos.pb.gz` and loaded into a descriptor pool on first
use.

The message-to-JSON walk is ours rather than `json_format`, because
Kubernetes JSON is Go's `encoding/json` of the Go structs, not proto3 JSON:

- Field names are the Go json tags. The proto names equal them except for a
  handful of fields listed in `_RENAMED`; a few Go fields are embedded with
  `json:",inline"` and their message's fields are merged into the parent
  (`_INLINE`). Both tables are checked against the OpenAPI schema by tests.
- Presence follows Go. gogo-protobuf marshals a value (non-pointer) field
  always and a pointer field only when set; the descriptors keep gogo's
  `nullable=false` option on value fields. So a pointer field that is
  present is emitted even when zero (`replicas: 0`), while a zero value
  field is omitted, as `omitempty` would (fields without `omitempty`, such
  as a container's empty `name`, are then missing instead of `""`; the API
  treats both the same). Value struct fields are always emitted, `{}` when
  empty, as Go does.
- The types with their own JSON marshalling map to their JSON forms:
  `Time` and `MicroTime` to RFC 3339 strings (the zero time, which the wire
  carries as 0 s, is omitted, where Go writes `null`), `Duration` to Go's
  duration string, `Quantity` to its string, `IntOrString` to an int or a
  string, `RawExtension` and `FieldsV1` to the JSON they hold, the named
  slice types (`Verbs`, `ExtraValue`) to lists, `bytes` to base64.
"""

from __future__ import annotations

import base64
import functools
import gzip
import importlib.resources
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from timoner.api.errors import BadRequest

__all__ = ["PROTOBUF_CONTENT_TYPE", "decode_protobuf", "go_duration", "message_class"]

PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

_MAGIC = b"k8s\x00"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_GROUP = re.compile(r"^[a-z0-9.-]*$")

# Proto field names that differ from the Go json tag (the protobuf tag was
# derived from the Go field name instead).
_RENAMED: dict[tuple[str, str], str] = {
    ("k8s.io.api.authentication.v1.BoundObjectReference", "uID"): "uid",
    ("k8s.io.api.networking.v1.IngressClassParametersReference", "aPIGroup"): "apiGroup",
    ("k8s.io.api.admissionregistration.v1.MutatingWebhookConfiguration", "Webhooks"): "webhooks",
    ("k8s.io.api.admissionregistration.v1.ValidatingWebhookConfiguration", "Webhooks"): "webhooks",
    ("k8s.io.api.admissionregistration.v1.Validation", "Expression"): "expression",
    ("k8s.io.api.admissionregistration.v1.Variable", "Name"): "name",
    ("k8s.io.api.admissionregistration.v1.Variable", "Expression"): "expression",
}

# Go fields embedded with `json:",inline"`: their fields appear in the parent.
_INLINE: frozenset[tuple[str, str]] = frozenset(
    {
        ("k8s.io.api.core.v1.Volume", "volumeSource"),
        ("k8s.io.api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
        ("k8s.io.api.core.v1.Probe", "handler"),
        ("k8s.io.api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
        ("k8s.io.api.core.v1.ConfigMapEnvSource", "localObjectReference"),
        ("k8s.io.api.core.v1.ConfigMapKeySelector", "localObjectReference"),
        ("k8s.io.api.core.v1.ConfigMapProjection", "localObjectReference"),
        ("k8s.io.api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
        ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
        ("k8s.io.api.core.v1.SecretKeySelector", "localObjectReference"),
        ("k8s.io.api.core.v1.SecretProjection", "localObjectReference"),
        ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
        ("k8s.io.api.admissionregistration.v1.NamedRuleWithOperations", "ruleWithOperations"),
        ("k8s.io.api.admissionregistration.v1.RuleWithOperations", "rule"),
    }
)

# API groups whose proto package is not the group's first label.
_GROUP_PACKAGES = {
    "": "k8s.io.api.core",
    "rbac.authorization.k8s.io": "k8s.io.api.rbac",
    "apiextensions.k8s.io": "k8s.io.apiextensions-apiserver.pkg.apis.apiextensions",
    "meta.k8s.io": "k8s.io.apimachinery.pkg.apis.meta",
}

# gogoproto.nullable is extension 65001 of FieldOptions, a bool (varint).
_NULLABLE_FIELD = 65001


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """The object a Kubernetes protobuf body carries, as Kubernetes JSON.

    `apiVersion` and `kind` come from the envelope. Raises `BadRequest` when
    the body is not a Kubernetes protobuf envelope, names a kind with no
    known message, or does not parse as that message.
    """
    if not body.startswith(_MAGIC):
        raise BadRequest("protobuf body does not start with the Kubernetes magic number k8s\\x00")
    envelope = _parse(_UNKNOWN, body[len(_MAGIC) :], "runtime.Unknown envelope")
    api_version = _text(envelope.typeMeta.apiVersion)
    kind = _text(envelope.typeMeta.kind)
    if not api_version or not kind:
        raise BadRequest("protobuf envelope has no apiVersion and kind in its typeMeta")
    if envelope.contentEncoding:
        raise BadRequest(f"protobuf envelope content encoding {envelope.contentEncoding!r} is not supported")
    name = _message_name(api_version, kind)
    message = _parse(name, envelope.raw, f"{api_version} {kind}")
    try:
        obj = _message_json(message)
    except RecursionError:
        # Only RawExtensions holding protobuf envelopes nest without bound.
        raise BadRequest("protobuf body nests embedded objects too deeply") from None
    return {"apiVersion": api_version, "kind": kind, **obj}


def message_class(full_name: str) -> type[Message]:
    """The generated message class for a fully qualified Kubernetes proto message name.

    Raises KeyError when the schema file has no such message.
    """
    return _schema().message_class(full_name)


# --- the schema ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Schema:
    """The descriptor pool of the Kubernetes protos and its message classes."""

    pool: descriptor_pool.DescriptorPool

    def descriptor(self, full_name: str) -> Descriptor:
        return self.pool.FindMessageTypeByName(full_name)

    def message_class(self, full_name: str) -> type[Message]:
        return _class_for(self.descriptor(full_name))


@functools.cache
def _schema() -> _Schema:
    data = importlib.resources.files("timoner.api").joinpath("_data/kubernetes-protos.pb.gz").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(gzip.decompress(data)).file
    pool = descriptor_pool.DescriptorPool()
    # The extraction tool writes each file after its imports, the order the pool needs.
    for fdp in files:
        pool.Add(fdp)
    return _Schema(pool)


@functools.cache
def _class_for(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _message_name(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    if not (_NAME.match(version) and _NAME.match(kind) and _GROUP.match(group)):
        raise BadRequest(f"protobuf envelope names an invalid apiVersion {api_version!r} or kind {kind!r}")
    package = _GROUP_PACKAGES.get(group) or f"k8s.io.api.{group.split('.')[0]}"
    schema = _schema()
    # DeleteOptions, Status and the other meta kinds travel under any group's version.
    for name in (f"{package}.{version}.{kind}", f"{_META}.{kind}" if version == "v1" else ""):
        if not name:
            continue
        try:
            schema.descriptor(name)
        except KeyError:
            continue
        return name
    raise BadRequest(f"no protobuf schema for {kind} in {api_version}; send it as application/json")


def _parse(full_name: str, raw: bytes, what: str) -> Message:
    message = _schema().message_class(full_name)()
    try:
        message.ParseFromString(raw)
    except DecodeError as err:
        raise BadRequest(f"cannot decode protobuf {what}: {err}") from None
    return message


# --- message to JSON -------------------------------------------------------

_OMIT = object()


@dataclass(frozen=True, slots=True)
class _Field:
    """How one proto field becomes one JSON member."""

    name: str
    key: str
    field: FieldDescriptor
    repeated: bool
    is_map: bool
    message: bool
    nullable: bool
    inline: bool


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[_Field, ...]:
    # Declaration order is Go struct order, so the dict comes out in the order Go writes.
    out = []
    for fd in descriptor.fields:
        is_message = fd.type == FieldDescriptor.TYPE_MESSAGE
        is_map = is_message and fd.message_type.GetOptions().map_entry
        out.append(
            _Field(
                name=fd.name,
                key=_RENAMED.get((descriptor.full_name, fd.name), fd.name),
                field=fd,
                repeated=fd.is_repeated,
                is_map=is_map,
                message=is_message,
                nullable=_nullable(fd),
                inline=(descriptor.full_name, fd.name) in _INLINE,
            )
        )
    return tuple(out)


def _nullable(fd: FieldDescriptor) -> bool:
    """gogoproto.nullable (default true) from the field's options, kept as unknown bytes."""
    data = fd.GetOptions().SerializeToString()
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            if number == _NULLABLE_FIELD:
                return value != 0
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            break
    return True


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in _plan(message.DESCRIPTOR):
        value = getattr(message, f.name)
        if f.is_map:
            if value:
                converter = _value_converter(f.field.message_type.fields_by_name["value"])
                out[f.key] = {_text(k): converter(v) for k, v in value.items()}
        elif f.repeated:
            if value:
                converter = _value_converter(f.field)
                out[f.key] = [converter(v) for v in value]
        elif f.message:
            if not message.HasField(f.name):
                continue
            converted = _convert_message(value)
            if f.inline:
                out.update(converted)
            elif converted is not _OMIT and converted is not None:
                out[f.key] = converted
        elif f.nullable:
            # A pointer in Go: present means set, even to its zero value.
            if message.HasField(f.name):
                out[f.key] = _scalar(f.field, value)
        elif value:
            out[f.key] = _scalar(f.field, value)
    return out


def _value_converter(fd: FieldDescriptor) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _element
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _base64
    if fd.type == FieldDescriptor.TYPE_STRING:
        return _text
    return lambda v: v


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _base64(value)
    if fd.type == FieldDescriptor.TYPE_STRING:
        return _text(value)
    return value


def _text(value: str | bytes) -> str:
    # proto2 does not check UTF-8 and upb then hands out bytes; Go's
    # encoding/json writes each invalid byte as U+FFFD.
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _element(message: Message) -> Any:
    # Inside a list or map there is no key to omit: Go writes the zero time as null.
    converted = _convert_message(message)
    return None if converted is _OMIT else converted


def _convert_message(message: Message) -> Any:
    special = _SPECIAL.get(message.DESCRIPTOR.full_name)
    if special is not None:
        return special(message)
    if _is_named_slice(message.DESCRIPTOR):
        return [_text(item) for item in message.items]
    return _message_json(message)


@functools.cache
def _is_named_slice(descriptor: Descriptor) -> bool:
    # go-to-protobuf wraps a named Go slice type (`type Verbs []string`) in a
    # message with one repeated `items` field and turns gogo's stringers off;
    # DownwardAPIProjection also has only `items`, but is a real struct.
    fields = descriptor.fields
    return (
        len(fields) == 1
        and fields[0].name == "items"
        and fields[0].is_repeated
        and bool(descriptor.GetOptions().SerializeToString())
    )


# --- the types with their own JSON form -----------------------------------


def _time(message: Message) -> Any:
    # Upstream decodes 0 s 0 ns as the zero time, which Go writes as null.
    if message.seconds == 0 and message.nanos == 0:
        return _OMIT
    return (_EPOCH + timedelta(seconds=message.seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(message: Message) -> Any:
    if message.seconds == 0 and message.nanos == 0:
        return _OMIT
    moment = _EPOCH + timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _duration(message: Message) -> str:
    return go_duration(message.duration)


def _int_or_string(message: Message) -> int | str:
    return _text(message.strVal) if message.type == 1 else message.intVal


def _embedded_json(raw: bytes) -> Any:
    if not raw:
        return _OMIT
    if raw.startswith(_MAGIC):
        return decode_protobuf(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"embedded object in protobuf body is not JSON: {err}") from None


_SPECIAL = {
    f"{_META}.Time": _time,
    f"{_META}.MicroTime": _micro_time,
    f"{_META}.Duration": _duration,
    f"{_META}.FieldsV1": lambda m: _embedded_json(m.Raw),
    "k8s.io.apimachinery.pkg.runtime.RawExtension": lambda m: _embedded_json(m.raw),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda m: _text(m.string),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
}


def go_duration(nanoseconds: int) -> str:
    """Go's `time.Duration.String()`: `1h0m0s`, `1.5s`, `300ms`, `0s`."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    n = abs(nanoseconds)
    if n < 1_000_000_000:
        # Under a second Go picks the largest unit that keeps the integer part non-zero.
        for scale, unit in ((1_000_000, "ms"), (1_000, "\u00b5s"), (1, "ns")):
            if n >= scale:
                return sign + _fraction(n, scale) + unit
    text = _fraction(n % 60_000_000_000, 1_000_000_000) + "s"
    minutes, hours = (n // 60_000_000_000) % 60, n // 3_600_000_000_000
    if hours:
        text = f"{hours}h{minutes}m{text}"
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def _fraction(value: int, scale: int) -> str:
    whole, rest = divmod(value, scale)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
