"""The `/openapi/v3` documents: one OpenAPI 3.0 document per group-version, plus the root index.

kubectl 1.32 reads these for `--validate=strict` (the default of apply,
create, replace and edit: it looks for a PATCH operation whose
`x-kubernetes-group-version-kind` matches the object and that declares a
`fieldValidation` query parameter) and for `kubectl explain` (it finds the
schema whose `x-kubernetes-group-version-kind` matches and renders its
fields). Helm's OpenAPI validation reads them too.

Design:
- Paths and operations mirror kube-apiserver's: operation ids such as
  `patchAppsV1NamespacedDeployment`, `x-kubernetes-action` spelled as
  upstream (get, list, watch, watchlist, post, put, patch, delete,
  deletecollection), the same query parameters. The streaming-only
  subresources (log, exec, attach, portforward, proxy) are left out: no
  client we serve reads their OpenAPI entries.
- `components.schemas` holds every definition reachable from the
  group-version's kinds (and their lists, subresource kinds and the meta
  types clients expect), converted from the package's JSON-schema dialect to
  OpenAPI 3 the way kube-openapi's spec3 output looks: `#/$defs/X` becomes
  `#/components/schemas/X`, a `$ref` with siblings is wrapped in `allOf`
  (kubectl explain expects that), nullable type lists collapse to one type,
  and IntOrString / Quantity take their v3 `oneOf` forms. Each converted
  definition is cached; treat the returned documents as read-only because
  they share those cached dicts.
- `document_hash` is kube-openapi's etag: uppercase hex SHA-512 of the bytes
  served, used in `serverRelativeURL` so clients cache per content.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from timoner.api.registry import ResourceInfo, Subresource
from timoner.api.schema import KUBERNETES_VERSION, definitions, ref_name

__all__ = ["build_group_version_document", "build_root", "document_hash", "group_version_path"]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_ALWAYS = tuple(
    _META + name
    for name in (
        "APIResourceList",
        "DeleteOptions",
        "ListMeta",
        "ObjectMeta",
        "Patch",
        "Status",
        "WatchEvent",
    )
)
_STREAMING = frozenset({"log", "exec", "attach", "portforward", "proxy"})
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_PREFIX = "#/components/schemas/"
# The package's copies of these two lost their descriptions; kubectl explain shows upstream's.
_DESCRIPTIONS = {
    _INT_OR_STRING: "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
    "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for "
    "example, a JSON field that can accept a name or number.",
    _QUANTITY: "Quantity is a fixed-point representation of a number. It provides convenient "
    "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
}

_JSON_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_WATCH_TYPES = (
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
)
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


# --- schema conversion -------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _PREFIX + name}


def _convert(node: Any, *, field: str = "") -> Any:
    """One JSON-schema node in kube-openapi's v3 shape."""
    if not isinstance(node, Mapping):
        return node
    name = ref_name(node)
    if name is not None:
        siblings = {k: _convert(v) for k, v in node.items() if k != "$ref"}
        return {"allOf": [_ref(name)], **siblings} if siblings else _ref(name)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            out["type"] = kinds[0] if len(kinds) == 1 else kinds
        elif key == "enum" and field in ("apiVersion", "kind"):
            # kubernetes-validate pins apiVersion/kind to one value; upstream's documents do not.
            continue
        elif key == "properties":
            out[key] = {prop: _convert(sub, field=prop) for prop, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [_convert(sub) for sub in value]
        else:
            out[key] = value
    return out


@functools.cache
def _schema(name: str) -> dict[str, Any]:
    """The v3 form of one definition, computed once per process."""
    source = definitions()[name]
    description = source.get("description") or _DESCRIPTIONS.get(name)
    head = {"description": description} if description else {}
    if name == _INT_OR_STRING:
        return {**head, "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}
    if name == _QUANTITY:
        return {**head, "oneOf": [{"type": "string"}, {"type": "number"}]}
    return _convert(source)


def _refs(node: Any) -> Iterable[str]:
    """Every definition name a (source dialect) node references, at any depth."""
    if isinstance(node, Mapping):
        name = ref_name(node)
        if name is not None:
            yield name
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@functools.cache
def _closure(name: str) -> frozenset[str]:
    """A definition and everything it reaches."""
    seen = {name}
    todo = [name]
    while todo:
        for found in _refs(definitions()[todo.pop()]):
            if found not in seen:
                seen.add(found)
                todo.append(found)
    return frozenset(seen)


@functools.cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name; a kind's own definition wins over shared meta types."""
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        gvks = schema.get("x-kubernetes-group-version-kind") or ()
        for gvk in gvks:
            key = (gvk["group"], gvk["version"], gvk["kind"])
            if key not in index or len(gvks) == 1:
                index[key] = name
    return index


# --- paths and operations ----------------------------------------------------------------------------


def group_version_path(group: str, version: str) -> str:
    """`api/v1` or `apis/apps/v1`: the key of a group-version in the root document."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _camel_group(group: str) -> str:
    """`RbacAuthorization` for rbac.authorization.k8s.io, `Core` for the core group (operation ids)."""
    if not group:
        return "Core"
    trimmed = group.removesuffix(".k8s.io")
    return "".join(part[:1].upper() + part[1:] for part in trimmed.split("."))


def _tag(group: str, version: str) -> str:
    camel = _camel_group(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


def _param(name: str, description: str, kind: str = "string", *, where: str = "query") -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "in": where, "name": name}
    if where == "path":
        out["required"] = True
    out["schema"] = {"type": kind, "uniqueItems": True}
    return out


_DRY_RUN = _param(
    "dryRun",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun "
    "directive will result in an error response and no further processing of the request. Valid values are: "
    "- All: all dry run stages will be processed",
)
_FIELD_MANAGER = _param(
    "fieldManager",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must "
    "be less than or 128 characters long, and only contain printable characters, as defined by "
    "https://golang.org/pkg/unicode/#IsPrint.",
)
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are "
    "silently dropped from the object, and will ignore all but the last duplicate field that the decoder "
    "encounters. - Warn: This will send a warning via the standard warning response header for each unknown "
    "field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This "
    "will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or "
    "if any duplicate fields are present. The error returned from the server will contain all unknown and "
    "duplicate fields encountered.",
)
_FORCE = _param(
    "force",
    'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields owned by other '
    "people. Force flag must be unset for non-apply patch requests.",
    "boolean",
)
_LIST_PARAMS = (
    _param("allowWatchBookmarks", 'allowWatchBookmarks requests watch events with type "BOOKMARK".', "boolean"),
    _param("continue", "The continue option should be set when retrieving more results from the server."),
    _param("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    _param("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    _param("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    _param("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    _param("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    _param("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
    _param("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _param("watch", "Watch for changes to the described resources and return them as a stream.", "boolean"),
)  # fmt: skip
_DELETE_PARAMS = (
    _DRY_RUN,
    _param("gracePeriodSeconds", "The duration in seconds before the object should be deleted.", "integer"),
    _param(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow "
        "fails with a corrupt object error.",
        "boolean",
    ),
    _param("orphanDependents", "Deprecated: please use the PropagationPolicy.", "boolean"),
    _param("propagationPolicy", "Whether and how garbage collection will be performed."),
)
_PRETTY = _param("pretty", "If 'true', then the output is pretty printed.")
_NAMESPACE = _param("namespace", "object name and auth scope, such as for teams and projects", where="path")


def _content(name: str, types: Sequence[str] = _JSON_TYPES) -> dict[str, Any]:
    return {media: {"schema": _ref(name)} for media in types}


def _responses(name: str, *codes: str) -> dict[str, Any]:
    words = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: dict[str, Any] = {code: {"content": _content(name), "description": words[code]} for code in codes}
    out["401"] = {"description": "Unauthorized"}
    return out


class _Ops:
    """Builds the operations of one group-version into a `paths` dict."""

    def __init__(self, group: str, version: str) -> None:
        self.group, self.version = group, version
        self.prefix = "/" + group_version_path(group, version)
        self.camel = _camel_group(group) + version[:1].upper() + version[1:]
        self.tag = _tag(group, version)
        self.paths: dict[str, dict[str, Any]] = {}
        self.schemas: set[str] = set(_ALWAYS)
        self.custom: dict[str, dict[str, Any]] = {}  # custom resources' schemas, by definition name

    def _path(self, path: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
        item = self.paths.setdefault(path, {})
        item["parameters"] = [*parameters, _PRETTY]
        return item

    def _op(
        self,
        action: str,
        operation_id: str,
        description: str,
        gvk: tuple[str, str, str],
        *,
        parameters: Sequence[dict[str, Any]] = (),
        body: dict[str, Any] | None = None,
        responses: dict[str, Any],
    ) -> dict[str, Any]:
        op: dict[str, Any] = {"description": description, "operationId": operation_id}
        if parameters:
            op["parameters"] = list(parameters)
        if body is not None:
            op["requestBody"] = body
        op["responses"] = responses
        op["tags"] = [self.tag]
        op["x-kubernetes-action"] = action
        op["x-kubernetes-group-version-kind"] = {"group": gvk[0], "version": gvk[1], "kind": gvk[2]}
        return op

    def add_resource(self, resource: ResourceInfo) -> None:
        kind, verbs = resource.kind, set(resource.verbs)
        gvk = (resource.group, resource.version, kind)
        if resource.custom is not None:
            definition, list_definition = self._add_custom(resource)
        else:
            definition = resource.definition or _by_gvk().get(gvk, "")
            list_definition = _by_gvk().get((resource.group, resource.version, resource.list_kind), "")
        if not definition:
            return
        if resource.custom is None:
            self.schemas.add(definition)
            if list_definition:
                self.schemas.add(list_definition)
        scope = "Namespaced" if resource.namespaced else ""
        ns_params = [_NAMESPACE] if resource.namespaced else []
        base = f"{self.prefix}/namespaces/{{namespace}}/{resource.plural}" if resource.namespaced else (
            f"{self.prefix}/{resource.plural}")  # fmt: skip
        name_param = _param("name", f"name of the {kind}", where="path")
        ident = f"{self.camel}{scope}{kind}"

        collection = {}
        if "list" in verbs and list_definition:
            collection["get"] = self._op(
                "list", f"list{ident}", f"list or watch objects of kind {kind}", gvk,
                parameters=_LIST_PARAMS, responses=_responses(list_definition, "200"),
            )  # fmt: skip
        if "create" in verbs:
            collection["post"] = self._op(
                "post", f"create{ident}", f"create a {kind}", gvk,
                parameters=(_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION),
                body={"content": {"*/*": {"schema": _ref(definition)}}, "required": True},
                responses=_responses(definition, "200", "201", "202"),
            )  # fmt: skip
        if "deletecollection" in verbs:
            collection["delete"] = self._op(
                "deletecollection", f"delete{self.camel}Collection{scope}{kind}", f"delete collection of {kind}",
                gvk, parameters=(*_DELETE_PARAMS, *_LIST_PARAMS), body=_delete_body(),
                responses=_responses(_META + "Status", "200"),
            )  # fmt: skip
        if collection:
            self._path(base, ns_params).update(collection)

        item = self._item_ops(ident, kind, gvk, definition, verbs)
        if item:
            self._path(f"{base}/{{name}}", [name_param, *ns_params]).update(item)

        if "list" in verbs and list_definition and resource.namespaced:
            self._path(f"{self.prefix}/{resource.plural}", []).update(
                get=self._op(
                    "list", f"list{self.camel}{kind}ForAllNamespaces", f"list or watch objects of kind {kind}",
                    gvk, parameters=_LIST_PARAMS, responses=_responses(list_definition, "200"),
                )
            )  # fmt: skip
        if "watch" in verbs:
            self._watch_paths(resource, ident, gvk, ns_params, name_param)

        for sub in resource.subresources:
            if sub.name not in _STREAMING:
                self._subresource(resource, sub, ident, base, [name_param, *ns_params])

    def _add_custom(self, resource: ResourceInfo) -> tuple[str, str]:
        """A custom resource's schema and list schema, as the apiextensions-apiserver publishes them."""
        name = custom_definition_name(resource)
        list_name = name[: -len(resource.kind)] + resource.list_kind
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        schema = _convert(dict(resource.custom.schema or {"type": "object",
                                                           "x-kubernetes-preserve-unknown-fields": True}))
        properties = dict(schema.get("properties") or {})
        properties["apiVersion"] = {"description": _definition_doc("io.k8s.api.core.v1.Pod", "apiVersion"),
                                    "type": "string"}
        properties["kind"] = {"description": _definition_doc("io.k8s.api.core.v1.Pod", "kind"), "type": "string"}
        properties["metadata"] = {"allOf": [_ref(_META + "ObjectMeta")],
                                  "description": _definition_doc(_META + "ObjectMeta", "")}
        schema = {**schema, "type": "object", "properties": dict(sorted(properties.items())),
                  "x-kubernetes-group-version-kind": [gvk]}
        self.custom[name] = schema
        self.custom[list_name] = {
            "description": f"{resource.list_kind} is a list of {resource.kind}",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": properties["apiVersion"],
                "items": {"description": f"List of {resource.plural}. More info: "
                          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                          "type": "array", "items": _ref(name)},
                "kind": properties["kind"],
                "metadata": {"allOf": [_ref(_META + "ListMeta")], "description": "Standard list metadata. "
                             "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
                             "api-conventions.md#types-kinds"},
            },
            "x-kubernetes-group-version-kind": [{**gvk, "kind": resource.list_kind}],
        }
        return name, list_name

    def _item_ops(
        self,
        ident: str,
        kind: str,
        gvk: tuple[str, str, str],
        definition: str,
        verbs: set[str],
        *,
        suffix: str = "",
    ) -> dict[str, Any]:
        what = f"{suffix.lower()} of the specified {kind}" if suffix else f"the specified {kind}"
        ops: dict[str, Any] = {}
        if "get" in verbs:
            ops["get"] = self._op(
                "get", f"read{ident}{suffix}", f"read {what}", gvk, responses=_responses(definition, "200")
            )
        if "update" in verbs:
            ops["put"] = self._op(
                "put", f"replace{ident}{suffix}", f"replace {what}", gvk,
                parameters=(_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION),
                body={"content": {"*/*": {"schema": _ref(definition)}}, "required": True},
                responses=_responses(definition, "200", "201"),
            )  # fmt: skip
        if "patch" in verbs:
            ops["patch"] = self._op(
                "patch", f"patch{ident}{suffix}", f"partially update {what}", gvk,
                parameters=(_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE),
                body={"content": _content(_META + "Patch", _PATCH_TYPES), "required": True},
                responses=_responses(definition, "200", "201"),
            )  # fmt: skip
        if "delete" in verbs and not suffix:
            ops["delete"] = self._op(
                "delete", f"delete{ident}", f"delete a {kind}", gvk, parameters=_DELETE_PARAMS,
                body=_delete_body(), responses=_responses(_META + "Status", "200", "202"),
            )  # fmt: skip
        return ops

    def _watch_paths(
        self,
        resource: ResourceInfo,
        ident: str,
        gvk: tuple[str, str, str],
        ns_params: list[dict[str, Any]],
        name_param: dict[str, Any],
    ) -> None:
        kind, event = resource.kind, _META + "WatchEvent"
        responses = {"200": {"content": _content(event, _WATCH_TYPES), "description": "OK"},
                     "401": {"description": "Unauthorized"}}  # fmt: skip
        watch_base = (
            f"{self.prefix}/watch/namespaces/{{namespace}}/{resource.plural}"
            if resource.namespaced
            else f"{self.prefix}/watch/{resource.plural}"
        )
        deprecated = " deprecated: use the 'watch' parameter with a list operation instead."
        self._path(watch_base, [*_LIST_PARAMS, *ns_params]).update(
            get=self._op("watchlist", f"watch{ident}List", f"watch individual changes to a list of {kind}."
                         + deprecated, gvk, responses=responses)
        )  # fmt: skip
        self._path(f"{watch_base}/{{name}}", [*_LIST_PARAMS, name_param, *ns_params]).update(
            get=self._op("watch", f"watch{ident}", f"watch changes to an object of kind {kind}." + deprecated,
                         gvk, responses=responses)
        )  # fmt: skip
        if resource.namespaced:
            self._path(f"{self.prefix}/watch/{resource.plural}", list(_LIST_PARAMS)).update(
                get=self._op("watchlist", f"watch{self.camel}{kind}ListForAllNamespaces",
                             f"watch individual changes to a list of {kind}." + deprecated, gvk,
                             responses=responses)
            )  # fmt: skip

    def _subresource(
        self,
        resource: ResourceInfo,
        sub: Subresource,
        ident: str,
        base: str,
        parameters: list[dict[str, Any]],
    ) -> None:
        gvk = (
            resource.group if sub.group is None else sub.group,
            resource.version if sub.version is None else sub.version,
            resource.kind if sub.kind is None else sub.kind,
        )
        if sub.kind is None:
            definition = custom_definition_name(resource) if resource.custom is not None else resource.definition
        else:
            definition = _by_gvk().get(gvk, "")
        if not definition:
            return
        if definition not in self.custom:
            self.schemas.add(definition)
        suffix = sub.name[:1].upper() + sub.name[1:]
        verbs = set(sub.verbs)
        ops = self._item_ops(ident, resource.kind, gvk, definition, verbs, suffix=suffix)
        if "create" in verbs:
            ops["post"] = self._op(
                "post", f"create{ident}{suffix}", f"create {sub.name} of a {resource.kind}", gvk,
                parameters=(_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION),
                body={"content": {"*/*": {"schema": _ref(definition)}}, "required": True},
                responses=_responses(definition, "200", "201", "202"),
            )  # fmt: skip
        if ops:
            self._path(f"{base}/{{name}}/{sub.name}", parameters).update(ops)


def _delete_body() -> dict[str, Any]:
    return {"content": {"*/*": {"schema": _ref(_META + "DeleteOptions")}}}


# --- documents ---------------------------------------------------------------------------------------


def build_group_version_document(group: str, version: str, resources: Sequence[ResourceInfo]) -> dict:
    """The OpenAPI 3.0 document served at `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`.

    Only `resources` of this group-version are described; others are ignored.
    Resources without a known definition (custom resources before their
    schemas are wired in) are skipped.
    """
    ops = _Ops(group, version)
    for resource in sorted(resources, key=lambda r: r.plural):
        if resource.group == group and resource.version == version:
            ops.add_resource(resource)
    names: set[str] = set()
    for root in ops.schemas:
        if root in definitions():
            names |= _closure(root)
    schemas = {name: _schema(name) for name in names}
    schemas.update(ops.custom)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": dict(sorted(ops.paths.items())),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def custom_definition_name(resource: ResourceInfo) -> str:
    """`com.example.v1.Widget` for example.com/v1 Widget: the group reversed, as upstream names CR schemas."""
    return ".".join([*reversed(resource.group.split(".")), resource.version, resource.kind])


def _definition_doc(definition: str, prop: str) -> str:
    schema = definitions().get(definition) or {}
    if not prop:
        return "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/" \
               "sig-architecture/api-conventions.md#metadata"
    return ((schema.get("properties") or {}).get(prop) or {}).get("description", "")


def document_hash(doc_bytes: bytes) -> str:
    """kube-openapi's etag for a served document: uppercase hex SHA-512."""
    return hashlib.sha512(doc_bytes).hexdigest().upper()


def build_root(paths: Mapping[str, str]) -> dict:
    """The `/openapi/v3` index: `{"api/v1": hash}` -> `{"paths": {"api/v1": {"serverRelativeURL": ...}}}`."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            for path, digest in sorted(paths.items())
        }
    }
