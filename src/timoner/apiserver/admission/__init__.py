"""Admission: what the API server does to and checks on a write between decoding and storage.

`Attributes` and `Plugin` (`_attributes.py`) are the seam every admission
plugin implements; the plugins of the built-in chain live in this package,
one module each.
"""

from ._attributes import CONNECT, CREATE, DELETE, UPDATE, Attributes, Plugin
from ._storageclass import DEFAULT_STORAGE_CLASS, LOCAL_PATH_PROVISIONER, STORAGE_CLASSES_PREFIX, admit_create

__all__ = [
    "CONNECT",
    "CREATE",
    "DEFAULT_STORAGE_CLASS",
    "DELETE",
    "LOCAL_PATH_PROVISIONER",
    "STORAGE_CLASSES_PREFIX",
    "UPDATE",
    "Attributes",
    "Plugin",
    "admit_create",
]
