"""The kubelet's AtomicWriter: project a set of files into a directory so a reader sees the old set or the new one.

The layout is upstream's (`pkg/volume/util/atomic_writer.go`), which
programs watching ConfigMap volumes rely on:

    <dir>/..2024_05_01_10_00_00.1234567/   the files themselves
    <dir>/..data -> ..2024_05_01_10_00_00.1234567
    <dir>/<name> -> ..data/<name>           one symlink per top-level path

`write_payload` writes a changed payload to a new timestamped directory,
points `..data_tmp` at it and renames that over `..data` (the one atomic
step), adds symlinks for new top-level paths, removes those of paths that
went away, then removes the old directory. An unchanged payload writes
nothing; as upstream only contents are compared, not modes (a pod's modes
cannot change). Paths starting with `..` are the writer's own.

Blocking (file system calls): run it in a thread.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATA_DIR", "FileProjection", "PayloadError", "clean_path", "write_payload"]

DATA_DIR = "..data"
_NEW_DATA_DIR = "..data_tmp"
_MAX_FILE_NAME = 255
_MAX_PATH = 4096


class PayloadError(ValueError):
    """A path in a payload that the writer refuses (upstream's `invalid path: ...`)."""


@dataclass(frozen=True, slots=True)
class FileProjection:
    """One file of a payload: its bytes and its permission bits."""

    data: bytes
    mode: int = 0o644


def clean_path(path: str) -> str:
    """`path` cleaned as Go's `filepath.Clean`; raises `PayloadError` for one the writer may not write."""
    if not path:
        raise PayloadError(f'invalid path: must not be empty: "{path}"')
    if path.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {path}")
    if len(path) > _MAX_PATH:
        raise PayloadError(f"invalid path: must be less than or equal to {_MAX_PATH} characters")
    items = path.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {path}")
        if len(item) > _MAX_FILE_NAME:
            raise PayloadError(f"invalid path: filenames must be less than or equal to {_MAX_FILE_NAME} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {path}")
    return posixpath.normpath(path)


def _old_paths(old: Path) -> set[str]:
    """Every file and directory below `old`, relative to it."""
    found: set[str] = set()
    for root, dirs, files in os.walk(old):
        rel = os.path.relpath(root, old)
        for name in dirs + files:
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


def _changed(payload: Mapping[str, FileProjection], old: Path) -> bool:
    for path, projection in payload.items():
        try:
            if (old / path).read_bytes() != projection.data:
                return True
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return True  # new, or a file that was a directory (upstream fails there; this writes it)
    return False


def _write_files(payload: Mapping[str, FileProjection], directory: Path) -> None:
    for path, projection in payload.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(projection.data)
        os.chmod(target, projection.mode)  # whatever the umask made of it


def write_payload(target_dir: Path, payload: Mapping[str, FileProjection]) -> bool:
    """Make `target_dir` show exactly `payload` (path -> file); True when anything was written or removed."""
    clean = {clean_path(path): projection for path, projection in payload.items()}
    data_dir = target_dir / DATA_DIR
    try:
        old_name = os.readlink(data_dir)
    except FileNotFoundError:
        old_name = ""
    to_remove: set[str] = set()
    write = True
    if old_name:
        old = target_dir / old_name
        new_paths = set()
        for path in clean:
            while path:
                new_paths.add(path)
                path = posixpath.dirname(path)
        to_remove = _old_paths(old) - new_paths
        if not _changed(clean, old) and not to_remove:
            write = False
            old_name = ""  # still in use: keep it
    if write:
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target_dir))
        os.chmod(new_dir, 0o755)  # group and others must be able to walk in
        try:
            _write_files(clean, new_dir)
            link = target_dir / _NEW_DATA_DIR
            link.unlink(missing_ok=True)  # a leftover of a writer that died here
            os.symlink(new_dir.name, link)
            os.replace(link, data_dir)
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
    for path in clean:
        top = path.split("/", 1)[0]
        visible = target_dir / top
        if not visible.is_symlink():
            os.symlink(f"{DATA_DIR}/{top}", visible)
    for path in to_remove:
        if "/" not in path:  # only the volume's top level holds user-visible symlinks
            (target_dir / path).unlink(missing_ok=True)
    if old_name:
        shutil.rmtree(target_dir / old_name, ignore_errors=True)
    return write
