"""Admission: what the API server does to and checks on a write between decoding and storage.

`Attributes` and `Plugin` (`_attributes.py`) are the seam every admission
plugin implements; `AdmissionChain` (`_chain.py`) runs the registered
plugins in upstream's order, and the `Store` calls it on every create,
update and delete. The plugins of the built-in chain live in this package,
one module each: DefaultStorageClass (`_storageclass.py`), the admission
webhooks (`_webhook.py`, with `_webhook_rules.py` for matching and
`_webhook_client.py` for the HTTPS calls).
"""

from ._attributes import CONNECT, CREATE, DELETE, UPDATE, Attributes, Plugin
from ._chain import PLUGIN_ORDER, AdmissionChain
from ._storageclass import (
    DEFAULT_STORAGE_CLASS,
    LOCAL_PATH_PROVISIONER,
    STORAGE_CLASSES_PREFIX,
    DefaultStorageClass,
)
from ._webhook import MutatingAdmissionWebhook, ValidatingAdmissionWebhook
from ._webhook_client import WebhookClient

__all__ = [
    "CONNECT",
    "CREATE",
    "DEFAULT_STORAGE_CLASS",
    "DELETE",
    "LOCAL_PATH_PROVISIONER",
    "PLUGIN_ORDER",
    "STORAGE_CLASSES_PREFIX",
    "UPDATE",
    "AdmissionChain",
    "Attributes",
    "DefaultStorageClass",
    "MutatingAdmissionWebhook",
    "Plugin",
    "ValidatingAdmissionWebhook",
    "WebhookClient",
]
