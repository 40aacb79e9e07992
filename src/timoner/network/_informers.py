"""The informers that cluster DNS and the ingress controller both read: every Service, and the
EndpointSlices that belong to one (labelled `kubernetes.io/service-name`). `NodeNetwork` runs one pair
for both; each component alone makes its own."""

from __future__ import annotations

from timoner.client import Client, Informer, resource_for

__all__ = ["SERVICE_NAME_LABEL", "service_informers"]

SERVICES = resource_for("v1", "Service")
ENDPOINT_SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service_informers(client: Client) -> tuple[Informer, Informer]:
    """(Services, labelled EndpointSlices), not running yet."""
    return Informer(client, SERVICES), Informer(client, ENDPOINT_SLICES, label_selector=SERVICE_NAME_LABEL)
