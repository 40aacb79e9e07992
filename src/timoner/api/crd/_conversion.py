"""`spec.conversion` of a CRD (validateCustomResourceConversion).

Paths are the internal type's, as upstream prints them: v1's
`conversion.webhook.clientConfig` is `conversion.webhookClientConfig`, and
`conversion.webhook.conversionReviewVersions` is
`conversion.conversionReviewVersions`. Webhook conversion validates but is not
served by Timoner (the lead's serving side warns about it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from timoner.api.crd._json import as_dict as _dict
from timoner.api.crd._json import as_list as _list
from timoner.api.crd._json import as_str as _str
from timoner.api.errors import Cause
from timoner.api.validation._field import Path, forbidden, invalid, not_supported, required
from timoner.api.validation._names import is_dns1035_label, is_dns1123_label

__all__ = ["validate_conversion"]

_REVIEW_VERSIONS = ("v1", "v1beta1")


def validate_conversion(conversion: Any, old_spec: dict | None, preserve: bool, path: Path) -> list[Cause]:
    if not isinstance(conversion, dict):
        return []
    causes: list[Cause] = []
    strategy = _str(conversion.get("strategy"))
    if strategy and strategy != "None" and preserve:
        causes.append(invalid(path.child("strategy"), strategy, "must be None if spec.preserveUnknownFields is true"))
    if not strategy:
        causes.append(required(path.child("strategy")))
    elif strategy not in ("None", "Webhook"):
        causes.append(not_supported(path.child("strategy"), strategy, ("None", "Webhook")))
    webhook = _dict(conversion.get("webhook"))
    client = webhook.get("clientConfig")
    review_versions = _list(webhook.get("conversionReviewVersions"))
    if strategy == "Webhook":
        cc_path = path.child("webhookClientConfig")
        if not isinstance(client, dict):
            causes.append(required(cc_path, "required when strategy is set to Webhook"))
        else:
            causes.extend(_client_config(client, cc_path))
        old_review = _list(_dict(_dict(_dict(old_spec).get("conversion")).get("webhook")).get("conversionReviewVersions"))
        require_known = old_spec is None or not old_review or any(v in _REVIEW_VERSIONS for v in old_review)
        causes.extend(_review_versions(review_versions, require_known, path.child("conversionReviewVersions")))
    else:
        if isinstance(client, dict):
            causes.append(forbidden(path.child("webhookClientConfig"), "should not be set when strategy is not set to Webhook"))
        if review_versions:
            causes.append(forbidden(path.child("conversionReviewVersions"),
                                    "should not be set when strategy is not set to Webhook"))
    return causes


def _client_config(client: dict, path: Path) -> list[Cause]:
    url = client.get("url")
    service = client.get("service")
    if (url is None) == (service is None):
        return [required(path, "exactly one of url or service is required")]
    causes: list[Cause] = []
    if url is not None:
        upath = path.child("url")
        parsed = urlparse(_str(url))
        if parsed.scheme != "https":
            causes.append(invalid(upath, url, "'https' is the only allowed URL scheme"))
        if not parsed.hostname:
            causes.append(invalid(upath, url, "host must be specified"))
        if parsed.username or parsed.password:
            causes.append(invalid(upath, url, "user information is not permitted in the URL"))
        if parsed.fragment or "#" in _str(url):
            causes.append(invalid(upath, url, "fragments are not permitted in the URL"))
        if parsed.query:
            causes.append(invalid(upath, url, "query parameters are not permitted in the URL"))
        return causes
    service = _dict(service)
    spath = path.child("service")
    name = _str(service.get("name"))
    namespace = _str(service.get("namespace"))
    if not name:
        causes.append(required(spath.child("name"), "service name is required"))
    if not namespace:
        causes.append(required(spath.child("namespace"), "service namespace is required"))
    elif errs := is_dns1123_label(namespace):
        causes.append(invalid(spath.child("namespace"), namespace, ",".join(errs)))
    port = service.get("port", 443)
    if isinstance(port, int) and not 1 <= port <= 65535:
        causes.append(invalid(spath.child("port"), port, "port is not valid: must be between 1 and 65535, inclusive"))
    svc_path = service.get("path")
    if isinstance(svc_path, str) and svc_path and not svc_path.startswith("/"):
        causes.append(invalid(spath.child("path"), svc_path, "must start with a '/'"))
    return causes


def _review_versions(versions: list, require_known: bool, path: Path) -> list[Cause]:
    if not versions:
        return [required(path)]
    causes: list[Cause] = []
    seen: set[str] = set()
    known = False
    for i, v in enumerate(versions):
        v = _str(v)
        if v in seen:
            causes.append(invalid(path.index(i), v, "duplicate version"))
            continue
        seen.add(v)
        causes.extend(invalid(path.index(i), v, e) for e in is_dns1035_label(v))
        known = known or v in _REVIEW_VERSIONS
    if require_known and not known:
        causes.append(invalid(path, versions, "must include at least one of " + ", ".join(_REVIEW_VERSIONS)))
    return causes
