"""Which REST resource a request addresses, and how its URL is spelled.

A `Resource` is the client's whole knowledge of a kind: group, version,
plural and scope are enough to build every URL. It is deliberately smaller
than the server's `ResourceInfo` so components can name custom resources
without a registry entry; `Resource.of(info)` and `resource_for(api_version,
kind)` build one from the registry for built-in kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from timoner.api.registry import BUILTIN, ResourceInfo

__all__ = ["Resource", "resource_for"]


@dataclass(frozen=True, slots=True)
class Resource:
    """A REST resource: `/api[s]/<group>/<version>/[namespaces/<ns>/]<plural>`."""

    group: str
    version: str
    plural: str
    namespaced: bool

    @classmethod
    def of(cls, info: ResourceInfo) -> Resource:
        return cls(info.group, info.version, info.plural, info.namespaced)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, *, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The URL path; `namespace=None` on a namespaced resource addresses all namespaces."""
        out = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            out += f"/namespaces/{quote(namespace, safe='')}"
        out += f"/{self.plural}"
        if name is not None:
            out += f"/{quote(name, safe='')}"
            if subresource:
                out += f"/{subresource}"
        return out


_BY_KIND: dict[tuple[str, str], Resource] = {}
for _info in BUILTIN:
    # Keep the first entry: BUILTIN lists core/v1 Event before events.k8s.io/v1 Event,
    # and the key includes the api version, so distinct versions do not collide.
    _BY_KIND.setdefault((_info.api_version, _info.kind), Resource.of(_info))


def resource_for(api_version: str, kind: str) -> Resource:
    """The built-in resource serving `kind` at `api_version` (`apps/v1`, `Deployment`).

    Raises `KeyError` for kinds Timoner does not build in (custom resources:
    construct a `Resource` directly).
    """
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise KeyError(f"no built-in resource for {api_version} {kind}") from None
