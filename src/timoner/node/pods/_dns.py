"""A pod's `/etc/resolv.conf` and `/etc/hosts`, formed as kubelet forms them, and the files that hold them.

DNS (`pod_dns`, kubelet's `dns.Configurer.GetPodDNS`): the base is the
host's resolver file (`PodWorkerConfig.resolv_conf`, kubelet's
`--resolv-conf`), parsed as upstream does (`nameserver` lines accumulate,
the last `search` line wins, `options` merge by name). Then by `dnsPolicy`:

- `ClusterFirst` (the hostNetwork pod's falls back to `Default`) and
  `ClusterFirstWithHostNet`: the cluster DNS servers only, search
  `<ns>.svc.<domain> svc.<domain> <domain>` followed by the host's search
  list, `options ndots:5`. Without cluster DNS servers the pod falls back
  to `Default`, with kubelet's Warning `MissingClusterDNS` events on the
  node and on the pod;
- `Default`: the host's configuration as it is;
- `None`: nothing but the pod's `dnsConfig`.

`dnsConfig` is appended (nameservers and searches without duplicates,
options by name, the pod's winning), then the result is cut to kubelet's
limits (3 nameservers; 32 search domains, none over 253 characters, 2048
characters in all), each cut a Warning `DNSConfigForming` event on the pod.
`format_resolv_conf` writes it as containerd does (`search`, `nameserver`
lines, `options`); a configuration with nothing in it is a copy of the
host's file, also as containerd does. Go iterates option maps in random
order; here options keep their first position.

Hosts (kubelet's `managedHostsFileContent`): the localhost lines, the pod
IP with `<hostname>.<subdomain>.<ns>.svc.<domain>` when the pod has a
`subdomain`, and its hostname (`spec.hostname`, else the pod's name, cut
to 63 characters), then the `hostAliases` one line per IP. A hostNetwork
pod gets the host's `/etc/hosts` and its host aliases instead.

`PodEtcFiles` writes both once per pod, as `<root_dir>/pods/<uid>/etc-hosts`
(kubelet's name) and `.../resolv.conf`, when the first container that
needs them starts, and gives each container read-write bind mounts of
them at `/etc/hosts` and `/etc/resolv.conf`, except where the container
mounts a volume of its own (as kubelet and containerd skip theirs). No
pod IP, no hosts file (as kubelet). The agent uses it only with a runtime
whose containers have their own mount namespace; the host's files are
never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timoner.client import EventRecorder

from ..runtime import Mount
from ._env import ContainerConfigError, go_quote

__all__ = [
    "DNSWarning",
    "PodDNS",
    "PodEtcFiles",
    "ResolvConf",
    "format_resolv_conf",
    "host_network_hosts",
    "managed_hosts",
    "parse_resolv_conf",
    "pod_dns",
    "pod_host_domain",
    "pod_hostname",
    "pods_with_etc_files",
    "remove_pod_etc_files",
]

log = logging.getLogger("timoner.node.pods")

ETC_HOSTS = "/etc/hosts"
ETC_RESOLV_CONF = "/etc/resolv.conf"
HOSTS_FILE = "etc-hosts"  # under the pod's directory, as kubelet's getEtcHostsPath
RESOLV_FILE = "resolv.conf"

MAX_NAMESERVERS = 3  # validation.MaxDNSNameservers
MAX_SEARCH_PATHS = 32  # validation.MaxDNSSearchPaths
MAX_SEARCH_LIST_CHARS = 2048  # validation.MaxDNSSearchListChars
MAX_SEARCH_LENGTH = 253  # DNS1123SubdomainMaxLength: longer search paths make some resolvers abort
DEFAULT_OPTIONS = ("ndots:5",)
HOSTNAME_MAX = 63

MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"

Obj = dict[str, Any]


# -- resolv.conf ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ResolvConf:
    """A resolver configuration: CRI's DNSConfig (servers, searches, options such as `ndots:5`)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DNSWarning:
    """A Warning event kubelet records while forming a pod's DNS: on the pod, or on the node."""

    reason: str
    message: str
    on_node: bool = False


@dataclass(frozen=True, slots=True)
class PodDNS:
    """What `pod_dns` decided for a pod: its resolver configuration and the warnings to record."""

    config: ResolvConf
    warnings: tuple[DNSWarning, ...] = ()


def _merge_options(options: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    """Upstream's `appendOptions`: one option per name (before any `:`), a later one replacing it."""
    by_name: dict[str, str] = {}
    for option in (*options, *new):
        by_name[option.split(":")[0]] = option
    return tuple(by_name.values())


def parse_resolv_conf(text: str) -> ResolvConf:
    """Upstream's `parseResolvConf`; raises `ValueError` for a `nameserver` line without an address."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: tuple[str, ...] = ()
    errors = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        fields = trimmed.split()
        if not fields:
            continue
        if fields[0] == "nameserver":
            if len(fields) >= 2:
                nameservers.append(fields[1])
            else:
                errors.append("nameserver list is empty ")
        elif fields[0] == "search":
            # The same domain with and without its trailing dot counts once; the root (".") not at all.
            searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = _merge_options(options, fields[1:])
    if errors:
        raise ValueError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    return ResolvConf(tuple(nameservers), tuple(searches), options)


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_pod_options(options: Sequence[str], pod_options: Sequence[Obj]) -> tuple[str, ...]:
    """Upstream's `mergeDNSOptions`: the pod's `dnsConfig.options` override the base's by name."""
    values: dict[str, str] = {}
    for option in options:
        name, _, value = option.partition(":")
        values[name] = value
    for option in pod_options:
        values[option.get("name") or ""] = option.get("value") or ""
    return tuple(f"{name}:{value}" if value else name for name, value in values.items())


def _fit_search(searches: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """Upstream's `formDNSSearchFitsLimits` without its event: the search list cut to the limits, and whether it was."""
    exceeded = len(searches) > MAX_SEARCH_PATHS
    kept = list(searches[:MAX_SEARCH_PATHS])
    fitting = [s for s in kept if len(s) <= MAX_SEARCH_LENGTH]
    exceeded = exceeded or len(fitting) != len(kept)
    length = len(" ".join(fitting))
    if length > MAX_SEARCH_LIST_CHARS:
        cut = cut_length = 0
        for search in reversed(fitting):  # drop whole domains from the end until the line fits
            cut_length += len(search) + 1
            cut += 1
            if length - cut_length <= MAX_SEARCH_LIST_CHARS:
                break
        fitting = fitting[:len(fitting) - cut]
        exceeded = True
    return tuple(fitting), exceeded


def _pod_ref(pod: Obj) -> str:
    """Upstream's `format.Pod`: `name_namespace(uid)`."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def pod_dns(pod: Obj, *, host: ResolvConf, cluster_dns: Sequence[str], cluster_domain: str) -> PodDNS:
    """Upstream's `GetPodDNS` for a kubelet whose `--resolv-conf` is the file `host` was read from."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or ""
    host_network = bool(spec.get("hostNetwork"))
    warnings: list[DNSWarning] = []
    if policy == "None":
        config = ResolvConf()
    elif policy == "Default" or (policy == "ClusterFirst" and host_network):
        config = host
    elif cluster_dns:  # ClusterFirst, ClusterFirstWithHostNet (and, as upstream, anything invalid)
        searches = host.searches
        if cluster_domain:
            namespace = (pod.get("metadata") or {}).get("namespace", "")
            searches = _unique((f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                                *host.searches))
        config = ResolvConf(tuple(cluster_dns), searches, DEFAULT_OPTIONS)
    else:
        message = ('kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
                   'policy. Falling back to "Default" policy.')
        warnings += [DNSWarning("MissingClusterDNS", message, on_node=True),
                     DNSWarning("MissingClusterDNS", f"pod: {go_quote(_pod_ref(pod))}. {message}")]
        config = host
    pod_config = spec.get("dnsConfig")
    if pod_config is not None:
        config = ResolvConf(_unique((*config.nameservers, *(pod_config.get("nameservers") or ()))),
                            _unique((*config.searches, *(pod_config.get("searches") or ()))),
                            _merge_pod_options(config.options, pod_config.get("options") or ()))
    nameservers = config.nameservers
    if len(nameservers) > MAX_NAMESERVERS:
        nameservers = nameservers[:MAX_NAMESERVERS]
        warnings.append(DNSWarning("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been "
                                   f"omitted, the applied nameserver line is: {' '.join(nameservers)}"))
    searches, exceeded = _fit_search(config.searches)
    if exceeded:
        warnings.append(DNSWarning("DNSConfigForming", "Search Line limits were exceeded, some search paths have "
                                   f"been omitted, the applied search line is: {' '.join(searches)}"))
    return PodDNS(ResolvConf(nameservers, searches, config.options), tuple(warnings))


def format_resolv_conf(config: ResolvConf) -> str:
    """containerd's `parseDNSOptions`: `search`, one `nameserver` line each, `options`; "" for nothing."""
    lines = []
    if config.searches:
        lines.append("search " + " ".join(config.searches))
    lines += [f"nameserver {server}" for server in config.nameservers]
    if config.options:
        lines.append("options " + " ".join(config.options))
    return "".join(line + "\n" for line in lines)


# -- hosts ---------------------------------------------------------------------------------------

def pod_hostname(pod: Obj) -> str:
    """The pod's short hostname as kubelet's `GeneratePodHostNameAndDomain`: `spec.hostname` or its name, at
    most 63 characters and then without a trailing `-` or `.`."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    hostname = spec.get("hostname") or meta.get("name", "")
    if len(hostname) > HOSTNAME_MAX:
        hostname = hostname[:HOSTNAME_MAX].rstrip("-.")
    return hostname


def pod_host_domain(pod: Obj, cluster_domain: str) -> str:
    """`<subdomain>.<namespace>.svc.<cluster domain>` for a pod with a `subdomain`, else ""."""
    subdomain = (pod.get("spec") or {}).get("subdomain") or ""
    if not subdomain:
        return ""
    return f"{subdomain}.{(pod.get('metadata') or {}).get('namespace', '')}.svc.{cluster_domain}"


def _alias_lines(aliases: Sequence[Mapping[str, Any]]) -> str:
    """Upstream's `hostsEntriesFromHostAliases`: each IP with all its hostnames on one line."""
    if not aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines += [f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or ()) for alias in aliases]
    return "\n".join(lines) + "\n"


def managed_hosts(pod_ips: Sequence[str], hostname: str, domain: str,
                  aliases: Sequence[Mapping[str, Any]] = ()) -> str:
    """Upstream's `managedHostsFileContent`."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}")
    return MANAGED_HOSTS_HEADER + "".join(line + "\n" for line in lines) + _alias_lines(aliases)


def host_network_hosts(node_hosts: str, aliases: Sequence[Mapping[str, Any]] = ()) -> str:
    """Upstream's `nodeHostsFileContent`: the node's hosts file, then the pod's host aliases."""
    return MANAGED_HOSTS_HEADER_HOST_NETWORK + node_hosts + _alias_lines(aliases)


# -- the files -----------------------------------------------------------------------------------

def _write_new(path: Path, content: bytes) -> None:
    """Write `path` whole (a temporary file renamed over it), mode 0644 as kubelet writes etc-hosts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def remove_pod_etc_files(pod_dir: Path) -> None:
    """Remove a pod's hosts and resolv.conf files (and `pod_dir`, if left empty); blocking."""
    for name in (HOSTS_FILE, RESOLV_FILE, f".{HOSTS_FILE}.tmp", f".{RESOLV_FILE}.tmp"):
        with contextlib.suppress(FileNotFoundError):
            (Path(pod_dir) / name).unlink()
    with contextlib.suppress(OSError):
        Path(pod_dir).rmdir()  # unless something else (its volumes) keeps files there


def pods_with_etc_files(root_dir: Path) -> list[str]:
    """The uids of the pods that have a hosts or resolv.conf file under an agent's `root_dir`."""
    try:
        entries = list(os.scandir(Path(root_dir) / "pods"))
    except FileNotFoundError:
        return []
    return sorted(entry.name for entry in entries
                  if any(os.path.lexists(os.path.join(entry.path, name)) for name in (HOSTS_FILE, RESOLV_FILE)))


class PodEtcFiles:
    """Every pod's `/etc/hosts` and `/etc/resolv.conf` on one node; see the module docstring.

    `cluster_dns`, `cluster_domain` and `resolv_conf` are kubelet's
    `--cluster-dns`, `--cluster-domain` and `--resolv-conf`.
    """

    def __init__(self, root_dir: Path, *, cluster_dns: Sequence[str] = (), cluster_domain: str = "cluster.local",
                 resolv_conf: Path = Path(ETC_RESOLV_CONF), recorder: EventRecorder | None = None,
                 node_name: str = "") -> None:
        self.root_dir = Path(root_dir)
        self.cluster_dns = tuple(cluster_dns)
        self.cluster_domain = cluster_domain
        self.resolv_conf = Path(resolv_conf)
        self.recorder = recorder
        self.node_name = node_name

    def pod_dir(self, uid: str) -> Path:
        return self.root_dir / "pods" / uid

    async def mounts(self, pod: Obj, container: Obj, *, pod_ip: str) -> tuple[Mount, ...]:
        """The container's mounts of the pod's files, written first if this is the pod's first container
        to need them; raises `ContainerConfigError` when they cannot be."""
        own = {m.get("mountPath") or "" for m in container.get("volumeMounts") or ()}
        pod_dir = self.pod_dir(pod["metadata"]["uid"])
        mounts = []
        if pod_ip and ETC_HOSTS not in own:  # kubelet compares the mountPath as written
            path = pod_dir / HOSTS_FILE
            if not await asyncio.to_thread(path.exists):
                await self._write(path, await asyncio.to_thread(self._hosts, pod, pod_ip))
            mounts.append(Mount(host_path=str(path), container_path=ETC_HOSTS))
        if ETC_RESOLV_CONF not in {posixpath.normpath(p) for p in own if p}:  # containerd cleans the path first
            path = pod_dir / RESOLV_FILE
            if not await asyncio.to_thread(path.exists):
                await self._write(path, await self._resolv_conf(pod))
            mounts.append(Mount(host_path=str(path), container_path=ETC_RESOLV_CONF))
        return tuple(mounts)

    async def _write(self, path: Path, content: bytes) -> None:
        try:
            await asyncio.to_thread(_write_new, path, content)
        except OSError as error:
            raise ContainerConfigError(f"write {path}: {error.strerror}") from None

    def _hosts(self, pod: Obj, pod_ip: str) -> bytes:
        spec = pod.get("spec") or {}
        aliases = list(spec.get("hostAliases") or ())
        if spec.get("hostNetwork"):
            try:
                return host_network_hosts(Path(ETC_HOSTS).read_text(errors="surrogateescape"),
                                          aliases).encode(errors="surrogateescape")
            except OSError as error:
                raise ContainerConfigError(f"open {ETC_HOSTS}: {error.strerror}") from None
        hostname = pod_hostname(pod)
        return managed_hosts([pod_ip], hostname, pod_host_domain(pod, self.cluster_domain), aliases).encode()

    async def _resolv_conf(self, pod: Obj) -> bytes:
        try:
            host_text = await asyncio.to_thread(self.resolv_conf.read_text, errors="surrogateescape")
        except OSError as error:
            raise ContainerConfigError(f"open {self.resolv_conf}: {error.strerror}") from None
        try:
            host = parse_resolv_conf(host_text)
        except ValueError as error:
            raise ContainerConfigError(f"Encountered error while parsing resolv conf file. Error: {error}") from None
        decided = pod_dns(pod, host=host, cluster_dns=self.cluster_dns, cluster_domain=self.cluster_domain)
        for warning in decided.warnings:
            await self._warn(pod, warning)
        # Nothing to say: the host's file as it is (containerd copies it).
        content = format_resolv_conf(decided.config) or host_text
        return content.encode(errors="surrogateescape")

    async def _warn(self, pod: Obj, warning: DNSWarning) -> None:
        meta = pod.get("metadata") or {}
        log.warning("pod %s/%s: %s: %s", meta.get("namespace"), meta.get("name"), warning.reason, warning.message)
        if self.recorder is None:
            return
        if warning.on_node:
            # kubelet's node reference: the Node by name, its name standing in for the uid.
            node = {"kind": "Node", "metadata": {"name": self.node_name, "uid": self.node_name}}
            await self.recorder.event(node, "Warning", warning.reason, warning.message)
        else:
            await self.recorder.event(pod, "Warning", warning.reason, warning.message, kind="Pod", api_version="v1")

    def pods_on_disk(self) -> list[str]:
        """The uids of the pods that have files here."""
        return pods_with_etc_files(self.root_dir)

    async def remove(self, uid: str) -> None:
        """Remove the pod's files (its containers must be gone)."""
        await asyncio.to_thread(remove_pod_etc_files, self.pod_dir(uid))
