"""admissionregistration.k8s.io/v1 webhook configurations, as upstream's admissionregistration validation.

Each webhook: a fully qualified name (a DNS-1123 subdomain of at least three
segments) unique within its configuration, rules with known operations and
scopes, `failurePolicy`, `matchPolicy`, `reinvocationPolicy` among the known
values, `sideEffects` required and, for a new webhook, `None` or
`NoneOnDryRun` (`Some`/`Unknown` stay valid on an object that had them),
`timeoutSeconds` 1..30, `admissionReviewVersions` including v1 or v1beta1,
and `clientConfig` with exactly one of an https `url` or a `service`.
`matchConditions` are not checked (Timoner does not evaluate them).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from timoner.api.errors import Cause
from timoner.api.validation._field import Path, duplicate, invalid, not_supported, required
from timoner.api.validation._meta import validate_label_selector
from timoner.api.validation._names import is_dns1035_label, is_dns1123_subdomain, is_valid_port_num

__all__ = ["validate_mutating_webhook_configuration", "validate_validating_webhook_configuration"]

_ACCEPTED_REVIEW_VERSIONS = ("v1", "v1beta1")
_OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
_SCOPES = ("*", "Cluster", "Namespaced")
_FAILURE_POLICIES = ("Fail", "Ignore")
_MATCH_POLICIES = ("Equivalent", "Exact")
_REINVOCATION_POLICIES = ("IfNeeded", "Never")
_ALL_SIDE_EFFECTS = ("None", "NoneOnDryRun", "Some", "Unknown")
_NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")
_URL_FORM = "; desired format: https://host[/path]"


def _fully_qualified(path: Path, name: str) -> list[Cause]:
    if not name:
        return [required(path)]
    name = name.removesuffix(".")
    errs = is_dns1123_subdomain(name)
    if errs:
        return [invalid(path, name, ",".join(errs))]
    if len(name.split(".")) < 3:
        return [invalid(path, name, "should be a domain with at least three segments separated by dots")]
    return []


def _rule(rule: dict, path: Path) -> list[Cause]:
    out: list[Cause] = []
    operations = rule.get("operations") or []
    if not operations:
        out.append(required(path.child("operations")))
    if len(operations) > 1 and "*" in operations:
        out.append(invalid(path.child("operations"), operations, "if '*' is present, must not specify other operations"))
    for i, op in enumerate(operations):
        if op not in _OPERATIONS:
            out.append(not_supported(path.child("operations").index(i), op, _OPERATIONS))
    for key, what in (("apiGroups", "API groups"), ("apiVersions", "API versions"), ("resources", "resources")):
        values = rule.get(key) or []
        if not values:
            out.append(required(path.child(key)))
        elif len(values) > 1 and "*" in values and key != "resources":
            out.append(invalid(path.child(key), values, f"if '*' is present, must not specify other {what}"))
    for i, version in enumerate(rule.get("apiVersions") or []):
        if version == "":
            out.append(required(path.child("apiVersions").index(i)))
    for i, resource in enumerate(rule.get("resources") or []):
        if resource == "":
            out.append(required(path.child("resources").index(i)))
    scope = rule.get("scope")
    if scope is not None and scope not in _SCOPES:
        out.append(not_supported(path.child("scope"), scope, _SCOPES))
    return out


def _client_config(config: dict, path: Path) -> list[Cause]:
    url, service = config.get("url"), config.get("service")
    if (url is None) == (service is None):
        return [required(path, "exactly one of url or service is required")]
    out: list[Cause] = []
    if url is not None:
        upath = path.child("url")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            return [required(upath, f"url must be a valid URL: {exc}{_URL_FORM}")]
        if parts.scheme != "https":
            out.append(invalid(upath, parts.scheme, "'https' is the only allowed URL scheme" + _URL_FORM))
        if not parts.netloc:
            out.append(invalid(upath, parts.netloc, "host must be specified" + _URL_FORM))
        if "@" in parts.netloc:
            out.append(invalid(upath, parts.netloc.split("@")[0], "user information is not permitted in the URL"))
        if parts.fragment:
            out.append(invalid(upath, parts.fragment, "fragments are not permitted in the URL"))
        if parts.query:
            out.append(invalid(upath, parts.query, "query parameters are not permitted in the URL"))
        return out
    spath = path.child("service")
    if not service.get("name"):
        out.append(required(spath.child("name"), "service name is required"))
    if not service.get("namespace"):
        out.append(required(spath.child("namespace"), "service namespace is required"))
    port = service.get("port", 443)
    errs = is_valid_port_num(port) if isinstance(port, int) else ["must be an integer"]
    if errs:
        out.append(invalid(spath.child("port"), port, "port is not valid: " + ", ".join(errs)))
    svc_path = service.get("path")
    if svc_path not in (None, "", "/") and not str(svc_path).startswith("/"):
        out.append(invalid(spath.child("path"), svc_path, "must start with a '/'"))
    return out


def _review_versions(versions: list, path: Path) -> list[Cause]:
    if not versions:
        return [required(path, f"must specify one of {', '.join(_ACCEPTED_REVIEW_VERSIONS)}")]
    out: list[Cause] = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            out.append(invalid(path.index(i), version, "duplicate version"))
            continue
        seen.add(version)
        out.extend(invalid(path.index(i), version, err) for err in is_dns1035_label(version))
    if not seen & set(_ACCEPTED_REVIEW_VERSIONS):
        out.append(invalid(path, versions, f"must include at least one of {', '.join(_ACCEPTED_REVIEW_VERSIONS)}"))
    return out


def _side_effects_before(old: dict | None) -> bool:
    """Upstream lets an update keep `Some`/`Unknown` when the stored object already had them."""
    return any(h.get("sideEffects") not in _NO_SIDE_EFFECTS for h in (old or {}).get("webhooks") or [])


def _webhooks(obj: dict, old: dict | None, *, mutating: bool) -> list[Cause]:
    out: list[Cause] = []
    allowed = _ALL_SIDE_EFFECTS if _side_effects_before(old) else _NO_SIDE_EFFECTS
    names: set[str] = set()
    for i, hook in enumerate(obj.get("webhooks") or []):
        path = Path("webhooks").index(i)
        name = hook.get("name") or ""
        out.extend(_fully_qualified(path.child("name"), name))
        for j, rule in enumerate(hook.get("rules") or []):
            out.extend(_rule(rule, path.child("rules").index(j)))
        for key, values in (("failurePolicy", _FAILURE_POLICIES), ("matchPolicy", _MATCH_POLICIES)):
            if hook.get(key) is not None and hook[key] not in values:
                out.append(not_supported(path.child(key), hook[key], values))
        if mutating and hook.get("reinvocationPolicy") is not None \
                and hook["reinvocationPolicy"] not in _REINVOCATION_POLICIES:
            out.append(not_supported(path.child("reinvocationPolicy"), hook["reinvocationPolicy"],
                                     _REINVOCATION_POLICIES))
        side_effects = hook.get("sideEffects")
        if side_effects is None:
            out.append(required(path.child("sideEffects"), f"must specify one of {', '.join(allowed)}"))
        elif side_effects not in allowed:
            out.append(not_supported(path.child("sideEffects"), side_effects, allowed))
        timeout = hook.get("timeoutSeconds")
        if timeout is not None and not 1 <= timeout <= 30:
            out.append(invalid(path.child("timeoutSeconds"), timeout,
                               "the timeout value must be between 1 and 30 seconds"))
        for key in ("namespaceSelector", "objectSelector"):
            if hook.get(key):
                out.extend(validate_label_selector(hook[key], path.child(key)))
        out.extend(_client_config(hook.get("clientConfig") or {}, path.child("clientConfig")))
        out.extend(_review_versions(hook.get("admissionReviewVersions") or [],
                                    path.child("admissionReviewVersions")))
        if name:
            if name in names:
                out.append(duplicate(path.child("name"), name))
            names.add(name)
    return out


def validate_mutating_webhook_configuration(obj: dict, old: dict | None) -> list[Cause]:
    return _webhooks(obj, old, mutating=True)


def validate_validating_webhook_configuration(obj: dict, old: dict | None) -> list[Cause]:
    return _webhooks(obj, old, mutating=False)
