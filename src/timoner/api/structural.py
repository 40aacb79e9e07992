"""Schema-driven decoding: pruning, unknown-field detection and Go's type checks in one walk.

Upstream decodes a request body into Go structs with `sigs.k8s.io/json`:
fields the struct does not know are dropped (and, for fieldValidation
Strict/Warn, reported as `unknown field "spec.template.spec.containers[0].x"`),
a JSON value of the wrong type fails the whole request with
`json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas
of type int32`, and `null` means "leave the zero value". `decode()` gives the
same answers for a plain dict, in place, in one pass.

Design:
- Each OpenAPI definition is compiled once into a tree of small node objects
  (`_Struct`, `_Map`, `_Array`, scalars). A struct is cached *before* its
  fields are compiled, so recursive definitions (JSONSchemaProps) simply point
  back at themselves. Compilation holds a lock; walkers never lock.
- The walk returns unknown-field paths relative to the node (None when there
  are none, the common case), and each parent prefixes its own key on the way
  out: no path strings are built for well-formed objects.
- A type error raises `_Mismatch`; every struct it unwinds through records its
  field name and, once, the innermost struct's Go name, which is exactly how
  Go's decoder builds `UnmarshalTypeError.Struct` and `.Field` (field names
  only, no list indices or map keys).
- `decode_with_schema()` runs the same walker over a JSON-schema node, for
  CustomResourceDefinition structural schemas (x-kubernetes-preserve-unknown-
  fields, -int-or-string, -embedded-resource). With `typed=False` it only
  prunes, as upstream does for custom resources, whose types and nulls are
  left to schema validation (422) instead of the decoder (400).

The Go type names in messages are approximations derived from the schema
(`v1.LabelSelector`, `[]v1.Container`, `map[string]string`, `int32`); upstream
names typed strings such as `v1.PullPolicy`, which the schema cannot tell.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timoner.api._gojson import base64_error, quantity_error, time_error
from timoner.api.errors import BadRequest
from timoner.api.schema import definitions, ref_name

__all__ = ["CompiledSchema", "DecodeResult", "compile_schema", "decode", "decode_with_schema", "prune"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

_FREE_FORM = frozenset(
    {
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    }
)
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_SCHEMA_PROPS = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
# Struct fields declared `json:",omitempty"` on a map or slice: Go decodes `{}`/`[]` into an empty
# map/slice and encodes it back as nothing, so an emptied field disappears (`kubectl label x a-` on the
# last label, `{"metadata":{"finalizers":[]}}`). Only ObjectMeta for now, where clients notice most.
_OMIT_EMPTY = {
    _OBJECT_META: frozenset({"labels", "annotations", "finalizers", "ownerReferences", "managedFields"}),
}


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What decoding found besides the (pruned, in place) object itself."""

    unknown_fields: list[str]  # upstream paths, e.g. 'spec.template.spec.containers[0].bar', in order met


class _Mismatch(Exception):
    """A JSON value the Go type cannot hold; unwinding structs fill in where it happened."""

    def __init__(self, value: str, go_type: str, *, message: str = "") -> None:
        super().__init__(message or value)
        self.value = value
        self.go_type = go_type
        self.message = message  # set for errors that are not json.UnmarshalTypeError (quantity, time, base64)
        self.fields: list[str] = []  # innermost first
        self.struct: str | None = None

    def render(self, default_struct: str) -> str:
        if self.message:
            return self.message
        if self.struct is None and not self.fields:
            return f"json: cannot unmarshal {self.value} into Go value of type {self.go_type}"
        struct = self.struct or default_struct
        field = ".".join(reversed(self.fields))
        return f"json: cannot unmarshal {self.value} into Go struct field {struct}.{field} of type {self.go_type}"


def _describe(value: Any) -> str:
    """How Go's decoder names a JSON value in `cannot unmarshal <X>`."""
    kind = type(value)
    if kind is str:
        return "string"
    if kind is bool:
        return "bool"
    if kind is dict:
        return "object"
    if kind is list:
        return "array"
    return "number"


def _join(key: str, rel: str) -> str:
    return key + rel if rel[0] == "[" else f"{key}.{rel}"


def _under(unknown: list[str] | None, key: str, found: list[str]) -> list[str]:
    """`unknown` (a new list if None) with the paths `found` below `key` (a field, or `[i]`) added."""
    if unknown is None:
        unknown = []
    unknown.extend([_join(key, rel) for rel in found])
    return unknown


# --- nodes -------------------------------------------------------------------------------------------


class _Node:
    """One compiled schema node: `walk` checks and prunes a value, returning unknown-field paths."""

    __slots__ = ("go_type",)
    go_type: str

    def walk(self, value: Any, report: bool) -> list[str] | None:
        raise NotImplementedError

    def zero(self) -> Any:
        """What Go stores for a JSON null in a list item or map value (None: keep the null)."""
        return None


class _Any(_Node):
    """Free-form JSON (RawExtension, FieldsV1, JSON, preserve-unknown-fields): kept verbatim."""

    __slots__ = ()

    def __init__(self, go_type: str = "interface {}") -> None:
        self.go_type = go_type

    def walk(self, value: Any, report: bool) -> list[str] | None:
        return None


class _Scalar(_Node):
    """string, bool, float64: the JSON value must have one of the Python types the JSON type parses to."""

    __slots__ = ("accepts", "zero_value")

    def __init__(self, go_type: str, accepts: tuple[type, ...], zero_value: Any) -> None:
        self.go_type = go_type
        self.accepts = accepts
        self.zero_value = zero_value

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if type(value) not in self.accepts:  # type(), not isinstance(): a bool is no number
            raise _Mismatch(_describe(value), self.go_type)
        return None

    def zero(self) -> Any:
        return self.zero_value


class _Bytes(_Node):
    """`format: byte`: Go's []byte takes a base64 string (StdEncoding, CR/LF ignored)."""

    __slots__ = ()

    def __init__(self) -> None:
        self.go_type = "[]uint8"

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if type(value) is not str:
            raise _Mismatch(_describe(value), "[]uint8")
        error = base64_error(value)
        if error:
            raise _Mismatch("string", "[]uint8", message=error)
        return None


class _Int(_Node):
    __slots__ = ("low", "high")

    def __init__(self, go_type: str, bounds: tuple[int, int]) -> None:
        self.go_type = go_type
        self.low, self.high = bounds

    def walk(self, value: Any, report: bool) -> list[str] | None:
        kind = type(value)
        if kind is int:
            if not self.low <= value <= self.high:
                raise _Mismatch(f"number {value}", self.go_type)
            return None
        if kind is float:
            # Go parses the literal with ParseInt, so even 2.0 is refused.
            raise _Mismatch(f"number {value!r}", self.go_type)
        raise _Mismatch(_describe(value), self.go_type)

    def zero(self) -> Any:
        return 0


class _IntOrString(_Node):
    """intstr.IntOrString: a string, or a number its UnmarshalJSON decodes into an int32."""

    __slots__ = ()

    def __init__(self, go_type: str = "intstr.IntOrString") -> None:
        self.go_type = go_type

    def walk(self, value: Any, report: bool) -> list[str] | None:
        kind = type(value)
        if kind is str:
            return None
        if kind is int:
            if not _INT32[0] <= value <= _INT32[1]:
                raise _Mismatch(f"number {value}", "int32")
            return None
        if kind is float:
            raise _Mismatch(f"number {value!r}", "int32")
        raise _Mismatch(_describe(value), "int32")

    def zero(self) -> Any:
        return 0


class _Quantity(_Node):
    """resource.Quantity: a string or number that ParseQuantity accepts."""

    __slots__ = ()

    def __init__(self) -> None:
        self.go_type = "resource.Quantity"

    def walk(self, value: Any, report: bool) -> list[str] | None:
        kind = type(value)
        if kind is str:
            text = value.strip()
        elif kind is int or kind is float:
            text = repr(value)
        else:
            text = "true"  # whatever it is, ParseQuantity sees no number in it
        error = quantity_error(text)
        if error:
            raise _Mismatch("string", self.go_type, message=error)
        return None

    def zero(self) -> Any:
        return "0"


class _Time(_Node):
    """metav1.Time / MicroTime: a string that time.Parse accepts with the type's layout."""

    __slots__ = ("micro",)

    def __init__(self, *, micro: bool) -> None:
        self.go_type = "string"  # their UnmarshalJSON first decodes into a Go string
        self.micro = micro

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if type(value) is not str:
            raise _Mismatch(_describe(value), "string")
        error = time_error(value, micro=self.micro)
        if error:
            raise _Mismatch("string", "string", message=error)
        return None


class _Struct(_Node):
    """A Go struct (or a structural-schema object): known fields walked, the rest pruned."""

    __slots__ = ("go_name", "fields", "preserve", "lenient", "omit_empty")

    def __init__(self, go_name: str, go_type: str, *, preserve: bool = False, lenient: bool = False,
                 omit_empty: frozenset[str] = frozenset()) -> None:
        self.go_name = go_name
        self.go_type = go_type
        self.fields: dict[str, _Node] = {}
        self.preserve = preserve  # x-kubernetes-preserve-unknown-fields: unknown keys stay, unreported
        self.lenient = lenient  # untyped (custom resource) mode: no type errors, nulls stay
        self.omit_empty = omit_empty  # map/slice fields dropped when empty, as `omitempty` encodes them

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if type(value) is not dict:
            if self.lenient:
                return None
            raise _Mismatch(_describe(value), self.go_type)
        fields = self.fields
        unknown: list[str] | None = None
        drop: list[str] | None = None
        for key, item in value.items():
            node = fields.get(key)
            if node is None:
                if self.preserve:
                    continue
                if drop is None:
                    drop = []
                drop.append(key)
                if report:
                    if unknown is None:
                        unknown = []
                    unknown.append(key)
                continue
            if item is None:
                if not self.lenient:
                    if drop is None:
                        drop = []
                    drop.append(key)
                continue
            try:
                found = node.walk(item, report)
            except _Mismatch as exc:
                exc.fields.append(key)
                if exc.struct is None:
                    exc.struct = self.go_name
                raise
            if found:
                unknown = _under(unknown, key, found)
            if not item and key in self.omit_empty and type(item) in (dict, list):
                if drop is None:
                    drop = []
                drop.append(key)
        if drop:
            for key in drop:
                del value[key]
        return unknown

    def zero(self) -> Any:
        return None if self.lenient else {}


class _Map(_Node):
    """A Go map[string]T (`additionalProperties`): every value is walked; keys are free."""

    __slots__ = ("value_node", "lenient")

    def __init__(self, value_node: _Node, *, go_type: str, lenient: bool = False) -> None:
        self.value_node = value_node
        self.go_type = go_type
        self.lenient = lenient

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if type(value) is not dict:
            if self.lenient:
                return None
            raise _Mismatch(_describe(value), self.go_type)
        node = self.value_node
        unknown: list[str] | None = None
        for key, item in value.items():
            if item is None:
                if not self.lenient:
                    value[key] = node.zero()  # Go stores the element type's zero value
                continue
            found = node.walk(item, report)
            if found:
                unknown = _under(unknown, key, found)
        return unknown


class _Array(_Node):
    """A Go slice (`items`): every element is walked; paths get `[i]`."""

    __slots__ = ("item_node", "lenient")

    def __init__(self, item_node: _Node, *, go_type: str, lenient: bool = False) -> None:
        self.item_node = item_node
        self.go_type = go_type
        self.lenient = lenient

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if type(value) is not list:
            if self.lenient:
                return None
            raise _Mismatch(_describe(value), self.go_type)
        node = self.item_node
        unknown: list[str] | None = None
        for index, item in enumerate(value):
            if item is None:
                if not self.lenient:
                    value[index] = node.zero()
                continue
            found = node.walk(item, report)
            if found:
                unknown = _under(unknown, f"[{index}]", found)
        return unknown


class _SchemaPropsOr(_Node):
    """JSONSchemaPropsOr{Bool,Array,StringArray}: custom UnmarshalJSON over a plain json.Unmarshal.

    The inner decode is not strict, so unknown fields below are pruned but
    never reported, and a type error names the struct that holds this field.
    """

    __slots__ = ("props", "allow_bool", "array_item")

    def __init__(self, go_type: str, props: _Node, *, allow_bool: bool, array_item: _Node | None) -> None:
        self.go_type = go_type
        self.props = props
        self.allow_bool = allow_bool
        self.array_item = (
            None if array_item is None else _Array(array_item, go_type="[]" + array_item.go_type)
        )

    def walk(self, value: Any, report: bool) -> list[str] | None:
        kind = type(value)
        try:
            if kind is dict:
                self.props.walk(value, False)
            elif kind is list and self.array_item is not None:
                self.array_item.walk(value, False)
            elif not (kind is bool and self.allow_bool):
                raise _Mismatch(_describe(value), self.go_type)
        except _Mismatch as exc:
            exc.struct = None
            raise
        return None


class _Prune(_Node):
    """A structural-schema node in untyped mode: apiextensions' schema/pruning for custom resources.

    What the schema does not describe goes, whatever the value's JSON type (an object where the
    schema has a string loses its fields, as upstream prunes by the value's shape); types and nulls
    are left to schema validation. `None` for a node is upstream's nil schema: everything in an
    object below it goes. Metadata of the resource and of embedded resources is ObjectMeta.
    """

    __slots__ = ("fields", "has_extra", "extra", "items", "preserve", "embedded")

    def __init__(self, *, preserve: bool, embedded: bool) -> None:
        self.go_type = "interface {}"
        self.fields: dict[str, _Node] = {}  # properties (and `metadata` of an embedded resource)
        self.has_extra = False  # additionalProperties given (true, or a schema)
        self.extra: _Prune | None = None  # its schema; None for `true`, which prunes everything below
        self.items: _Prune | None = None
        self.preserve = preserve  # x-kubernetes-preserve-unknown-fields: skipPrune
        self.embedded = embedded  # x-kubernetes-embedded-resource (or the resource root)

    def walk(self, value: Any, report: bool) -> list[str] | None:
        if self.preserve:
            return self.skip(value, report)
        kind = type(value)
        if kind is list:
            return _prune_items(value, self.items, report, skip=False)
        if kind is not dict:
            return None
        unknown: list[str] | None = None
        drop: list[str] | None = None
        for key, item in value.items():
            if self.embedded and key in ("apiVersion", "kind") and type(item) is str:
                continue
            node = self.fields.get(key)
            if node is None and not self.has_extra:
                if drop is None:
                    drop = []
                drop.append(key)
                if report:
                    if unknown is None:
                        unknown = []
                    unknown.append(key)
                continue
            found = _prune_with(item, node if node is not None else self.extra, report)
            if found:
                unknown = _under(unknown, key, found)
        if drop:
            for key in drop:
                del value[key]
        return unknown

    def skip(self, value: Any, report: bool) -> list[str] | None:
        """skipPrune: unknown fields stay, the known ones are pruned by their schemas."""
        kind = type(value)
        if kind is list:
            return _prune_items(value, self.items, report, skip=True)
        if kind is not dict:
            return None
        unknown: list[str] | None = None
        for key, item in value.items():
            node = self.fields.get(key)
            if node is None and not self.has_extra:
                continue
            if self.embedded and key in ("apiVersion", "kind"):
                continue
            found = _prune_with(item, node if node is not None else self.extra, report)
            if found:
                unknown = _under(unknown, key, found)
        return unknown


def _prune_with(value: Any, node: _Node | None, report: bool) -> list[str] | None:
    """prune(value, node), where a None node is upstream's nil schema."""
    if value is None:
        return None  # nothing to prune in a null; ObjectMeta's node would take it for a type error
    if node is not None:
        return node.walk(value, report)
    kind = type(value)
    if kind is dict:
        unknown = list(value) if report else None
        value.clear()
        return unknown
    if kind is list:
        return _prune_items(value, None, report, skip=False)
    return None


def _prune_items(value: list, node: _Prune | None, report: bool, *, skip: bool) -> list[str] | None:
    if skip and node is None:
        return None  # skipPrune of a nil schema keeps everything
    unknown: list[str] | None = None
    for index, item in enumerate(value):
        found = node.skip(item, report) if skip else _prune_with(item, node, report)  # type: ignore[union-attr]
        if found:
            unknown = _under(unknown, f"[{index}]", found)
    return unknown


# --- compiling ---------------------------------------------------------------------------------------

_LOCK = threading.RLock()
_COMPILING: dict[str, _Node] = {}
_READY: dict[str, _Node] = {}
_STRING = _Scalar("string", (str,), "")
_BOOL = _Scalar("bool", (bool,), False)
_FLOAT = _Scalar("float64", (int, float), 0)
_BYTES = _Bytes()


def _go_name(definition: str) -> tuple[str, str]:
    """(`DeploymentSpec`, `v1.DeploymentSpec`): the struct's name and its package-qualified type."""
    package, _, name = definition.rpartition(".")
    return name, f"{package.rpartition('.')[2]}.{name}"


def _types(node: Mapping[str, Any]) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def _definition_node(name: str, *, lenient: bool = False) -> _Node:
    key = f"~{name}" if lenient else name
    node = _READY.get(key)
    if node is not None:
        return node
    with _LOCK:
        node = _compile_definition(name, lenient=lenient)
        # Everything compiled on the way is complete now that the outermost call returned.
        _READY.update(_COMPILING)
        return node


def _compile_definition(name: str, *, lenient: bool) -> _Node:
    key = f"~{name}" if lenient else name
    cached = _COMPILING.get(key)
    if cached is not None:
        return cached
    schema = definitions()[name]
    short, go_type = _go_name(name)
    node: _Node
    if name in _FREE_FORM:
        node = _Any(go_type)
    elif name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
        node = _Any(go_type) if lenient else _IntOrString()
    elif name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
        node = _Any(go_type) if lenient else _Quantity()
    elif name in (
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    ):
        node = _Any(go_type) if lenient else _Time(micro=short == "MicroTime")
    elif short.startswith("JSONSchemaPropsOr"):
        props = _compile_definition(_SCHEMA_PROPS, lenient=lenient)
        array_item = {"JSONSchemaPropsOrArray": props, "JSONSchemaPropsOrStringArray": _STRING}.get(short)
        node = _SchemaPropsOr(
            go_type, props, allow_bool=short == "JSONSchemaPropsOrBool", array_item=array_item
        )
    elif _types(schema) == "object" or "properties" in schema:
        if "properties" not in schema and "additionalProperties" in schema:
            node = _compile(schema, lenient=lenient)
        else:
            struct = _Struct(short, go_type, lenient=lenient, omit_empty=_OMIT_EMPTY.get(name, frozenset()))
            _COMPILING[key] = struct  # before the fields: recursive definitions point back here
            for field, sub in (schema.get("properties") or {}).items():
                struct.fields[field] = _compile(sub, lenient=lenient)
            return struct
    else:
        node = _compile(schema, lenient=lenient)
    _COMPILING[key] = node
    return node


def _compile(schema: Mapping[str, Any], *, lenient: bool, embedded_meta: bool = False) -> _Node:
    """Compile an inline schema node (a property, an item, a CRD structural schema)."""
    if lenient:
        return _compile_pruner(schema, embedded_meta=embedded_meta)
    name = ref_name(schema)
    if name is not None:
        return _compile_definition(name, lenient=lenient)
    if schema.get("x-kubernetes-int-or-string"):
        return _Any("intstr.IntOrString") if lenient else _IntOrString()
    kind = _types(schema)
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource")) or embedded_meta
    properties = schema.get("properties")
    if kind == "object" or properties is not None or embedded:
        extra = schema.get("additionalProperties")
        if properties is None and not embedded:
            if isinstance(extra, Mapping):
                value = _compile(extra, lenient=lenient)
                return _Map(value, go_type=f"map[string]{value.go_type}", lenient=lenient)
            # An object that says nothing about its fields is free-form.
            return _Any("map[string]interface {}")
        struct = _Struct("", "map[string]interface {}", preserve=preserve or extra is True, lenient=lenient)
        for field, sub in (properties or {}).items():
            struct.fields[field] = _compile(sub, lenient=lenient)
        if embedded:
            # Embedded resources (and every custom resource's root) always carry these, and
            # their metadata is ObjectMeta whatever the schema says about it.
            struct.fields["apiVersion"] = _STRING if not lenient else _Any("string")
            struct.fields["kind"] = _STRING if not lenient else _Any("string")
            struct.fields["metadata"] = _compile_definition(_OBJECT_META, lenient=False)
        return struct
    if kind == "array":
        items = schema.get("items")
        item = _compile(items, lenient=lenient) if isinstance(items, Mapping) else _Any()
        return _Array(item, go_type=f"[]{item.go_type}", lenient=lenient)
    if preserve or kind is None:
        return _Any()
    if lenient:
        return _Any(kind)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "byte":
            return _BYTES
        return _STRING
    if kind == "integer":
        return _Int("int32", _INT32) if schema.get("format") == "int32" else _Int("int64", _INT64)
    if kind == "number":
        return _FLOAT
    if kind == "boolean":
        return _BOOL
    return _Any()


def _compile_pruner(schema: Mapping[str, Any], *, embedded_meta: bool = False) -> _Prune:
    """Compile a structural schema for untyped mode (custom resources): pruning only."""
    embedded = bool(schema.get("x-kubernetes-embedded-resource")) or embedded_meta
    node = _Prune(preserve=bool(schema.get("x-kubernetes-preserve-unknown-fields")), embedded=embedded)
    for field, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, Mapping):
            node.fields[field] = _compile_pruner(sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        node.has_extra, node.extra = True, _compile_pruner(extra)
    elif extra is True:
        node.has_extra = True
    items = schema.get("items")
    if isinstance(items, Mapping):
        node.items = _compile_pruner(items)
    if embedded:
        # Embedded resources (and every custom resource's root): metadata is ObjectMeta whatever the
        # schema says about it (objectmeta.Coerce), walked typed as the decoder would.
        node.fields["metadata"] = _compile_definition(_OBJECT_META, lenient=False)
    if embedded_meta:
        # The resource root never loses apiVersion and kind, whatever their type (isResourceRoot).
        node.fields["apiVersion"] = node.fields["kind"] = _Any("string")
    return node


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A JSON-schema node compiled for `decode_with_schema`; compile once per CRD version."""

    root: _Node
    typed: bool


def compile_schema(schema: Mapping[str, Any], *, typed: bool = True, resource: bool = True) -> CompiledSchema:
    """Compile a structural schema whose root is a whole object (apiVersion, kind, ObjectMeta metadata).

    `resource=False` compiles a schema for a value that is not a resource (a `default`).
    """
    with _LOCK:
        root = _compile(schema, lenient=not typed, embedded_meta=resource)
        _READY.update(_COMPILING)
    return CompiledSchema(root, typed)


# --- entry points ------------------------------------------------------------------------------------


def _run(root: _Node, obj: dict, *, kind: str, api_version: str) -> DecodeResult:
    try:
        unknown = root.walk(obj, True)
    except _Mismatch as exc:
        version = api_version.rpartition("/")[2]
        detail = exc.render(kind)
        raise BadRequest(f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}') from None
    return DecodeResult(unknown_fields=unknown or [])


def prune(value: Any, compiled: CompiledSchema) -> list[str] | None:
    """Prune `value` in place with an untyped (`typed=False`) schema; the removed fields' paths, in order met.

    None when the value cannot be walked at all (ObjectMeta of the wrong type, which decoding
    refuses with a 400).
    """
    try:
        return compiled.root.walk(value, True) or []
    except _Mismatch:
        return None


def decode(obj: dict, definition: str, *, kind: str, api_version: str) -> DecodeResult:
    """Prune `obj` in place against an official definition, report unknown fields, raise on bad types.

    Raises `BadRequest` (400) with upstream's `<Kind> in version "<v>" cannot
    be handled as a <Kind>: json: cannot unmarshal ...` message. `null`s are
    removed from structs and become the element type's zero value in lists
    and maps, as Go's decoder leaves them.
    """
    return _run(_definition_node(definition), obj, kind=kind, api_version=api_version)


def decode_with_schema(
    obj: dict, schema: Mapping[str, Any] | CompiledSchema, *, kind: str, api_version: str
) -> DecodeResult:
    """Like `decode`, against a structural JSON schema (or a `compile_schema` result).

    A raw mapping is compiled on every call in typed mode; callers with a
    schema they reuse (a CRD version) should compile it once.
    """
    compiled = schema if isinstance(schema, CompiledSchema) else compile_schema(schema)
    return _run(compiled.root, obj, kind=kind, api_version=api_version)
