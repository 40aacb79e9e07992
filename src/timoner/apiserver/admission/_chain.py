"""The admission chain: every plugin's `admit`, then every plugin's `validate`, in upstream's order.

Upstream runs the enabled plugins in one fixed order (kube-apiserver's
`AllOrderedPlugins`), first the mutating phase of each, then the validating
phase of each. `PLUGIN_ORDER` is that order for the plugins Timoner has;
`APIServer` registers plugin instances and `AdmissionChain.register` files
each under its name, so adding a plugin is one line in `server.py`. A
plugin named outside `PLUGIN_ORDER` runs after the known ones.

The `Store` calls the chain at upstream's points (see `store.py`): `admit`
on a create or update before the strategy prepares the object, `validate`
after the object validated and before the compare-and-swap, and
`validate` (operation DELETE) before a delete.
"""

from __future__ import annotations

from ._attributes import Attributes, Plugin

__all__ = ["PLUGIN_ORDER", "AdmissionChain"]

# kube-apiserver's order (pkg/kubeapiserver/options/plugins.go), restricted to what Timoner implements.
PLUGIN_ORDER: tuple[str, ...] = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)


def _rank(plugin: Plugin) -> int:
    try:
        return PLUGIN_ORDER.index(plugin.name)
    except ValueError:
        return len(PLUGIN_ORDER)


class AdmissionChain:
    """Admission plugins in upstream's order; `admit` runs the mutating phase, `validate` the validating one."""

    def __init__(self, plugins: list[Plugin] | tuple[Plugin, ...] = ()) -> None:
        self.plugins: list[Plugin] = []
        for plugin in plugins:
            self.register(plugin)

    def register(self, plugin: Plugin) -> None:
        """Add `plugin` at its place in `PLUGIN_ORDER` (after plugins of the same rank already there)."""
        if any(p.name == plugin.name for p in self.plugins):
            raise ValueError(f"admission plugin {plugin.name!r} is registered twice")
        rank = _rank(plugin)
        at = next((i for i, p in enumerate(self.plugins) if _rank(p) > rank), len(self.plugins))
        self.plugins.insert(at, plugin)

    def plugin(self, name: str) -> Plugin | None:
        return next((p for p in self.plugins if p.name == name), None)

    async def admit(self, attrs: Attributes) -> None:
        """The mutating phase: each handling plugin may change `attrs.obj` in turn."""
        for plugin in self.plugins:
            if plugin.handles(attrs):
                await plugin.admit(attrs)

    async def validate(self, attrs: Attributes) -> None:
        """The validating phase: the first plugin that refuses raises its `APIError`."""
        for plugin in self.plugins:
            if plugin.handles(attrs):
                await plugin.validate(attrs)

    async def close(self) -> None:
        """Release what plugins hold (the webhooks' HTTP clients)."""
        for plugin in self.plugins:
            close = getattr(plugin, "close", None)
            if close is not None:
                await close()
