"""Volume logic without an API server: the AtomicWriter, payload rules, the downward API format, hostPath and subPath."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timoner.node.pods import PodNetwork
from timoner.node.pods._atomic import DATA_DIR, FileProjection, PayloadError, clean_path, write_payload
from timoner.node.pods._env import ContainerConfigError, format_map, go_quote
from timoner.node.pods._volumes import (
    VolumeError,
    _check_host_path,
    _downward_payload,
    _keyed_payload,
    _object_data,
    _resolve_sub_path,
    volume_kind,
)
from timoner.node.runtime import ContainerSpec, Mount
from timoner.node.runtimes.process import _spec_from_json, _spec_to_json, mount_env_name

TS_DIR = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$")


def visible(directory: Path) -> dict[str, bytes]:
    """What a container sees: every file reachable from the user-visible names, by relative path."""
    out = {}
    for name in os.listdir(directory):
        if name.startswith(".."):
            continue
        path = directory / name
        if path.is_dir():
            for root, _, files in os.walk(path):
                for file in files:
                    full = Path(root) / file
                    out[str(full.relative_to(directory))] = full.read_bytes()
        else:
            out[name] = path.read_bytes()
    return out


# -- the AtomicWriter -------------------------------------------------------------------------------


def test_first_write_makes_upstreams_layout(tmp_path):
    assert write_payload(tmp_path, {"a": FileProjection(b"1", 0o644), "dir/b": FileProjection(b"2", 0o400)}) is True
    data = os.readlink(tmp_path / DATA_DIR)
    assert TS_DIR.match(data), data
    assert os.readlink(tmp_path / "a") == "..data/a" and os.readlink(tmp_path / "dir") == "..data/dir"
    assert sorted(os.listdir(tmp_path)) == sorted([DATA_DIR, data, "a", "dir"])
    assert visible(tmp_path) == {"a": b"1", "dir/b": b"2"}
    assert stat.S_IMODE((tmp_path / data / "a").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / data / "dir" / "b").stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / data).stat().st_mode) == 0o755


def test_an_unchanged_payload_writes_nothing(tmp_path):
    payload = {"a": FileProjection(b"1")}
    write_payload(tmp_path, payload)
    before = os.readlink(tmp_path / DATA_DIR)
    assert write_payload(tmp_path, payload) is False
    assert os.readlink(tmp_path / DATA_DIR) == before


def test_an_update_swaps_the_data_dir_and_prunes_old_names(tmp_path):
    write_payload(tmp_path, {"keep": FileProjection(b"old"), "gone": FileProjection(b"x")})
    old = os.readlink(tmp_path / DATA_DIR)
    assert write_payload(tmp_path, {"keep": FileProjection(b"new"), "added": FileProjection(b"y")}) is True
    new = os.readlink(tmp_path / DATA_DIR)
    assert new != old and not (tmp_path / old).exists()
    assert visible(tmp_path) == {"keep": b"new", "added": b"y"}
    assert not os.path.lexists(tmp_path / "gone")
    assert sorted(os.listdir(tmp_path)) == sorted([DATA_DIR, new, "keep", "added"])


def test_a_file_opened_before_an_update_keeps_the_old_contents(tmp_path):
    write_payload(tmp_path, {"k": FileProjection(b"v1")})
    with open(tmp_path / "k", "rb") as before:
        write_payload(tmp_path, {"k": FileProjection(b"v2")})
        assert before.read() == b"v1"
    assert (tmp_path / "k").read_bytes() == b"v2"


def test_modes_ignore_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_payload(tmp_path, {"k": FileProjection(b"v", 0o666)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o666


@pytest.mark.parametrize(("path", "message"), [
    ("", 'invalid path: must not be empty: ""'),
    ("/etc/x", "invalid path: must be relative path: /etc/x"),
    ("..", "invalid path: must not contain '..': .."),
    ("a/../b", "invalid path: must not contain '..': a/../b"),
    ("..data", "invalid path: must not start with '..': ..data"),
    ("..x/y", "invalid path: must not start with '..': ..x/y"),
    ("a/" + "x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
    ("x" * 4097, "invalid path: must be less than or equal to 4096 characters"),
])
def test_paths_the_writer_refuses(tmp_path, path, message):
    with pytest.raises(PayloadError) as error:
        write_payload(tmp_path, {path: FileProjection(b"")})
    assert str(error.value) == message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("path", "clean"), [("a//b/", "a/b"), ("./a", "a"), ("a/./b", "a/b"), ("a..b", "a..b")])
def test_paths_are_cleaned(path, clean):
    assert clean_path(path) == clean


names = st.text(alphabet="abc", min_size=1, max_size=2)
payloads = st.dictionaries(st.one_of(names, st.builds(lambda a, b: f"{a}/{b}", names, names)),
                           st.binary(max_size=3), max_size=5)


def _consistent(payload: dict[str, bytes]) -> bool:
    # A path cannot be both a file and a directory.
    return not any(other.startswith(path + "/") for path in payload for other in payload)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(payloads.filter(_consistent), min_size=1, max_size=4))
def test_after_every_write_the_volume_shows_exactly_the_payload(tmp_path_factory, sequence):
    directory = tmp_path_factory.mktemp("atomic")
    for payload in sequence:
        write_payload(directory, {path: FileProjection(data) for path, data in payload.items()})
        assert visible(directory) == payload
        hidden = [name for name in os.listdir(directory) if name.startswith("..")]
        assert len(hidden) == 2  # ..data and the one timestamped directory it points to
        assert write_payload(directory, {path: FileProjection(data) for path, data in payload.items()}) is False


# -- payload rules ------------------------------------------------------------------------------------

DATA = {"a": b"1", "b": b"2"}


def test_without_items_every_key_is_a_file_with_the_default_mode():
    assert _keyed_payload("configmap", DATA, [], 0o600, optional=False) == {
        "a": FileProjection(b"1", 0o600), "b": FileProjection(b"2", 0o600)}


def test_items_choose_keys_paths_and_modes():
    items = [{"key": "a", "path": "conf/a.txt"}, {"key": "b", "path": "b.sh", "mode": 0o755}]
    assert _keyed_payload("configmap", DATA, items, 0o644, optional=False) == {
        "conf/a.txt": FileProjection(b"1", 0o644), "b.sh": FileProjection(b"2", 0o755)}


@pytest.mark.parametrize(("plugin", "message"), [
    ("configmap", "configmap references non-existent config key: nope"),
    ("secret", "references non-existent secret key: nope"),
])
def test_a_missing_key_fails_unless_optional(plugin, message):
    items = [{"key": "a", "path": "a"}, {"key": "nope", "path": "n"}]
    with pytest.raises(VolumeError) as error:
        _keyed_payload(plugin, DATA, items, 0o644, optional=False)
    assert str(error.value) == message
    assert _keyed_payload(plugin, DATA, items, 0o644, optional=True) == {"a": FileProjection(b"1", 0o644)}


def test_object_data_decodes_secrets_and_binary_data():
    assert _object_data("secret", {"data": {"k": "aGk="}}) == {"k": b"hi"}
    assert _object_data("configmap", {"data": {"t": "é"}, "binaryData": {"bin": "AAE="}}) == {
        "t": "é".encode(), "bin": b"\x00\x01"}


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("two\nlines\ttab", '"two\\nlines\\ttab"'),
    ("\x01\x7f", '"\\x01\\x7f"'),
    ("café ü", '"café ü"'),
    ("\u00a0\u2028", '"\\u00a0\\u2028"'),
    ("\U000e0001", '"\\U000e0001"'),
])
def test_go_quote_matches_strconv_quote(text, quoted):
    assert go_quote(text) == quoted


def test_labels_read_as_sorted_key_value_lines():
    assert format_map({"tier": "web", "app": 'a "b"'}) == 'app="a \\"b\\""\ntier="web"'
    assert format_map({}) == ""


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"b": "2", "a": "1"},
                 "annotations": {"note": "x\ny"}},
    "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]},
}
NETWORK = PodNetwork("10.0.0.1", "10.0.0.2", {"cpu": "4", "memory": "8Gi"})


def test_downward_api_items_in_upstreams_format():
    items = [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}, "mode": 0o600},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "one", "fieldRef": {"fieldPath": "metadata.labels['b']"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}},
        {"path": "cpulimit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
    ]
    payload = _downward_payload(POD, items, 0o644, NETWORK)
    assert {path: p.data.decode() for path, p in payload.items()} == {
        "name": "p", "ns": "ns", "uid": "u-1", "labels": 'a="1"\nb="2"', "annotations": 'note="x\\ny"',
        "one": "2", "mem": "64", "cpu": "250", "cpulimit": "4"}
    assert payload["ns"].mode == 0o600 and payload["name"].mode == 0o644


def test_downward_api_errors_are_gathered():
    items = [{"path": "a", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
             {"path": "b", "fieldRef": {"fieldPath": "metadata.bogus"}}]
    with pytest.raises(VolumeError) as error:
        _downward_payload(POD, items, 0o644, NETWORK)
    assert str(error.value) == "[container nope not found, unsupported fieldPath: metadata.bogus]"


@pytest.mark.parametrize(("volume", "kind"), [
    ({"name": "v", "emptyDir": {}}, "emptyDir"),
    ({"name": "v", "configMap": {"name": "c"}}, "configMap"),
    ({"name": "v", "hostPath": {"path": "/"}, "secret": None}, "hostPath"),
])
def test_volume_kind(volume, kind):
    assert volume_kind(volume) == kind


# -- hostPath -----------------------------------------------------------------------------------------


def test_host_path_type_checks(tmp_path):
    directory, file = tmp_path / "d", tmp_path / "f"
    directory.mkdir()
    file.write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s"))
    try:
        for kind, path in [("", tmp_path / "missing"), ("Directory", directory), ("File", file),
                           ("Socket", tmp_path / "s"), ("CharDevice", Path("/dev/null"))]:
            _check_host_path(str(path), kind)
        for kind, path, what in [("Directory", file, "a directory"), ("Directory", tmp_path / "missing", "a directory"),
                                 ("File", directory, "a file"), ("Socket", file, "a socket file"),
                                 ("CharDevice", file, "a character device"),
                                 ("BlockDevice", Path("/dev/null"), "a block device"),
                                 ("FileOrCreate", directory, "a file"), ("DirectoryOrCreate", file, "a directory")]:
            with pytest.raises(VolumeError) as error:
                _check_host_path(str(path), kind)
            assert str(error.value) == f"hostPath type check failed: {path} is not {what}"
    finally:
        sock.close()
    assert not (tmp_path / "missing").exists()


def test_host_path_or_create_makes_what_is_missing(tmp_path):
    _check_host_path(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    assert (tmp_path / "new" / "dir").is_dir()
    _check_host_path(str(tmp_path / "new" / "file"), "FileOrCreate")
    assert (tmp_path / "new" / "file").is_file()
    with pytest.raises(VolumeError, match="cannot create .*/absent/file: No such file or directory"):
        _check_host_path(str(tmp_path / "absent" / "file"), "FileOrCreate")


# -- subPath ------------------------------------------------------------------------------------------


def test_sub_path_resolves_symlinks_inside_the_volume(tmp_path):
    volume = tmp_path / "vol"
    volume.mkdir()
    write_payload(volume, {"app.conf": FileProjection(b"x")})
    real = _resolve_sub_path(str(volume), "app.conf", mount="m", container="c")
    assert real == os.path.realpath(volume / os.readlink(volume / DATA_DIR) / "app.conf")


def test_a_missing_sub_path_is_made_with_the_volumes_mode(tmp_path):
    volume = tmp_path / "vol"
    volume.mkdir()
    os.chmod(volume, 0o751)
    made = _resolve_sub_path(str(volume), "a/b", mount="m", container="c")
    assert made == str(volume / "a" / "b") and stat.S_IMODE(os.stat(made).st_mode) == 0o751


@pytest.mark.parametrize(("sub_path", "message"), [
    ("/abs", "error SubPath `/abs` must not be an absolute path"),
    ("a/../../x", "unable to provision SubPath `a/../../x`: must not contain '..'"),
    ("out", 'failed to prepare subPath for volumeMount "m" of container "c"'),
    ("out/new", 'failed to prepare subPath for volumeMount "m" of container "c"'),
])
def test_a_sub_path_may_not_leave_the_volume(tmp_path, sub_path, message):
    volume, outside = tmp_path / "vol", tmp_path / "outside"
    volume.mkdir()
    outside.mkdir()
    (volume / "out").symlink_to(outside)
    with pytest.raises(ContainerConfigError) as error:
        _resolve_sub_path(str(volume), sub_path, mount="m", container="c")
    assert str(error.value) == message
    assert os.listdir(outside) == []  # nothing was made through the symlink


# -- the runtime's side ---------------------------------------------------------------------------------


def test_mounts_survive_the_runtimes_record():
    spec = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox",
                         mounts=(Mount("/host/a", "/etc/a", read_only=True), Mount("/host/b/x", "/x", sub_path="x")))
    assert _spec_from_json(_spec_to_json(spec)) == spec


@pytest.mark.parametrize(("path", "name"), [("/etc/config", "TIMONER_MOUNT_ETC_CONFIG"),
                                            ("/var/run/secrets/x.y/", "TIMONER_MOUNT_VAR_RUN_SECRETS_X_Y")])
def test_mount_env_name(path, name):
    assert mount_env_name(path) == name
