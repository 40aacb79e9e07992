"""Which admission webhooks a request concerns: configurations compiled, rules and selectors matched.

Pure functions over plain dicts, mirroring upstream's
`apiserver/pkg/admission/plugin/webhook` (`rules.Matcher`, the namespace
and object matchers). A `Webhook` is one entry of a
Mutating/ValidatingWebhookConfiguration with upstream's defaults filled in
and its selectors parsed once.

Rules: `operations`, `apiGroups`, `apiVersions` match by equality or `*`;
`resources` are `res`, `res/sub`, `*` (every resource, no subresource),
`*/sub`, `res/*` and `*/*`; `scope` is `*`, `Cluster` or `Namespaced`,
where a Namespace object counts as cluster-scoped. The namespace selector
applies to namespaced requests and to Namespace objects (whose own labels
it reads on CREATE and UPDATE); the object selector matches when either the
new or the old object's labels match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from timoner.api.selectors import LabelSelector, label_selector_from_dict

__all__ = ["Webhook", "compile_webhooks", "namespace_selected", "object_selected", "rules_match"]


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook of a configuration, defaults applied, selectors parsed."""

    name: str
    configuration: str
    rules: tuple[dict, ...]
    namespace_selector: LabelSelector
    object_selector: LabelSelector
    namespace_selector_empty: bool
    object_selector_empty: bool
    failure_policy: str
    match_policy: str
    side_effects: str
    timeout_seconds: int
    client_config: dict
    reinvocation_policy: str = "Never"
    admission_review_versions: tuple[str, ...] = ("v1",)

    @property
    def key(self) -> str:
        """Upstream identifies a webhook by configuration and webhook name."""
        return f"{self.configuration}/{self.name}"


def _empty(selector: Mapping | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def compile_webhooks(configuration: dict) -> list[Webhook]:
    """The webhooks of a stored configuration, in their order, with upstream's defaults where missing."""
    config_name = (configuration.get("metadata") or {}).get("name", "")
    out: list[Webhook] = []
    for hook in configuration.get("webhooks") or []:
        ns_sel = hook.get("namespaceSelector") or {}
        obj_sel = hook.get("objectSelector") or {}
        out.append(Webhook(
            name=hook.get("name", ""),
            configuration=config_name,
            rules=tuple(hook.get("rules") or ()),
            namespace_selector=label_selector_from_dict(ns_sel),
            object_selector=label_selector_from_dict(obj_sel),
            namespace_selector_empty=_empty(ns_sel),
            object_selector_empty=_empty(obj_sel),
            failure_policy=hook.get("failurePolicy") or "Fail",
            match_policy=hook.get("matchPolicy") or "Equivalent",
            side_effects=hook.get("sideEffects") or "Unknown",
            timeout_seconds=int(hook.get("timeoutSeconds") or 10),
            client_config=hook.get("clientConfig") or {},
            reinvocation_policy=hook.get("reinvocationPolicy") or "Never",
            admission_review_versions=tuple(hook.get("admissionReviewVersions") or ("v1",)),
        ))
    return out


def _split_resource(spec: str) -> tuple[str, str]:
    resource, _, sub = spec.partition("/")
    return resource, sub


def _rule_matches(rule: Mapping, *, operation: str, group: str, version: str, resource: str, subresource: str,
                  namespace: str, is_namespace: bool) -> bool:
    operations = rule.get("operations") or ()
    if "*" not in operations and operation not in operations:
        return False
    groups = rule.get("apiGroups") or ()
    if "*" not in groups and group not in groups:
        return False
    versions = rule.get("apiVersions") or ()
    if "*" not in versions and version not in versions:
        return False
    for spec in rule.get("resources") or ():
        res, sub = _split_resource(spec)
        if (res == "*" or res == resource) and (sub == "*" or sub == subresource):
            break
    else:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Namespaced":
        return not is_namespace and bool(namespace)
    if scope == "Cluster":
        return is_namespace or not namespace
    return True


def rules_match(webhook: Webhook, *, operation: str, group: str, version: str, resource: str,
                subresource: str = "", namespace: str = "") -> bool:
    """Whether any of the webhook's rules covers this request (upstream's `rules.Matcher`)."""
    is_namespace = not group and resource == "namespaces"
    return any(_rule_matches(rule, operation=operation, group=group, version=version, resource=resource,
                             subresource=subresource, namespace=namespace, is_namespace=is_namespace)
               for rule in webhook.rules)


def namespace_selected(webhook: Webhook, *, namespace: str, is_namespace: bool,
                       namespace_labels: Mapping[str, str] | None) -> bool:
    """Upstream's `MatchNamespaceSelector`: cluster-scoped requests (other than Namespaces) always match."""
    if not namespace and not is_namespace:
        return True
    if webhook.namespace_selector_empty:
        return True
    return webhook.namespace_selector.matches(namespace_labels or {})


def _labels(obj: Mapping | None) -> Mapping[str, str] | None:
    if obj is None:
        return None
    return (obj.get("metadata") or {}).get("labels") or {}


def object_selected(webhook: Webhook, obj: Mapping | None, old: Mapping | None) -> bool:
    """Upstream's `MatchObjectSelector`: the new or the old object's labels match."""
    if webhook.object_selector_empty:
        return True
    return any(labels is not None and webhook.object_selector.matches(labels)
               for labels in (_labels(obj), _labels(old)))
