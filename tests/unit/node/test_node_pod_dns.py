"""A pod's /etc/resolv.conf and /etc/hosts: kubelet's DNS policies, dnsConfig merging and limits, the managed
hosts file, and `PodEtcFiles` writing them once under the pod's directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from timoner.node.pods import ContainerConfigError, PodEtcFiles
from timoner.node.pods._dns import (
    DNSWarning,
    ResolvConf,
    format_resolv_conf,
    host_network_hosts,
    managed_hosts,
    parse_resolv_conf,
    pod_dns,
    pod_host_domain,
    pod_hostname,
)
from timoner.node.runtime import Mount

HOST = ResolvConf(("10.255.255.53", "8.8.8.8"), ("corp.example", "example.com"), ("ndots:2", "timeout:1"))
CLUSTER = ("10.96.0.10",)
CLUSTER_SEARCH = ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local")


def make_pod(policy="ClusterFirst", *, host_network=False, dns_config=None, name="web", **spec):
    body = {"metadata": {"name": name, "namespace": "ns1", "uid": "u-1"},
            "spec": {"dnsPolicy": policy, "hostNetwork": host_network, **spec}}
    if dns_config is not None:
        body["spec"]["dnsConfig"] = dns_config
    return body


def test_parse_resolv_conf_as_upstream():
    text = ("# a comment\nnameserver 10.0.0.1\n  nameserver 10.0.0.2  \nsearch old.example\n"
            "search corp.example. example.com . \noptions ndots:2 attempts:3\noptions ndots:1 rotate\n"
            "domain ignored.example\n")
    assert parse_resolv_conf(text) == ResolvConf(("10.0.0.1", "10.0.0.2"), ("corp.example", "example.com"),
                                                 ("ndots:1", "attempts:3", "rotate"))
    assert parse_resolv_conf("") == ResolvConf()
    with pytest.raises(ValueError, match="nameserver list is empty"):
        parse_resolv_conf("nameserver\n")


@pytest.mark.parametrize(("pod", "cluster_dns", "want"), [
    pytest.param(make_pod("ClusterFirst"), CLUSTER,
                 ResolvConf(CLUSTER, CLUSTER_SEARCH + HOST.searches, ("ndots:5",)), id="cluster-first"),
    pytest.param(make_pod("ClusterFirst", host_network=True), CLUSTER, HOST, id="cluster-first-host-network"),
    pytest.param(make_pod("ClusterFirstWithHostNet", host_network=True), CLUSTER,
                 ResolvConf(CLUSTER, CLUSTER_SEARCH + HOST.searches, ("ndots:5",)), id="with-host-net"),
    pytest.param(make_pod("ClusterFirstWithHostNet"), CLUSTER,
                 ResolvConf(CLUSTER, CLUSTER_SEARCH + HOST.searches, ("ndots:5",)), id="with-host-net-no-host"),
    pytest.param(make_pod("Default"), CLUSTER, HOST, id="default"),
    pytest.param(make_pod("None", dns_config={"nameservers": ["1.1.1.1"], "searches": ["a.example"],
                                              "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}),
                 CLUSTER, ResolvConf(("1.1.1.1",), ("a.example",), ("ndots:1", "edns0")), id="none"),
    pytest.param(make_pod("ClusterFirst", dns_config={
        "nameservers": ["10.96.0.10", "1.1.1.1"], "searches": ["svc.cluster.local", "b.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}, {"name": "edns0"}]}),
        CLUSTER, ResolvConf(("10.96.0.10", "1.1.1.1"), CLUSTER_SEARCH + HOST.searches + ("b.example",),
                            ("ndots:2", "single-request-reopen", "edns0")), id="cluster-first-with-dns-config"),
    pytest.param(make_pod("Default", dns_config={"options": [{"name": "timeout", "value": "5"}]}), CLUSTER,
                 ResolvConf(HOST.nameservers, HOST.searches, ("ndots:2", "timeout:5")), id="default-options"),
])
def test_pod_dns_policies(pod, cluster_dns, want):
    decided = pod_dns(pod, host=HOST, cluster_dns=cluster_dns, cluster_domain="cluster.local")
    assert decided.config == want
    assert decided.warnings == ()


def test_cluster_first_without_cluster_dns_falls_back_to_default_with_kubelets_warnings():
    decided = pod_dns(make_pod("ClusterFirst"), host=HOST, cluster_dns=(), cluster_domain="cluster.local")
    assert decided.config == HOST
    message = ('kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" policy. '
               'Falling back to "Default" policy.')
    assert decided.warnings == (DNSWarning("MissingClusterDNS", message, on_node=True),
                                DNSWarning("MissingClusterDNS", f'pod: "web_ns1(u-1)". {message}'))
    # Default and None never need the cluster's servers.
    assert pod_dns(make_pod("Default"), host=HOST, cluster_dns=(), cluster_domain="cluster.local").warnings == ()


def test_cluster_searches_without_duplicates_and_without_a_cluster_domain():
    host = ResolvConf(("10.0.0.1",), ("cluster.local", "corp.example"), ())
    decided = pod_dns(make_pod(), host=host, cluster_dns=CLUSTER, cluster_domain="cluster.local")
    assert decided.config.searches == CLUSTER_SEARCH + ("corp.example",)
    assert pod_dns(make_pod(), host=host, cluster_dns=CLUSTER, cluster_domain="").config.searches == host.searches


def test_nameserver_limit():
    pod = make_pod("None", dns_config={"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]})
    decided = pod_dns(pod, host=HOST, cluster_dns=CLUSTER, cluster_domain="cluster.local")
    assert decided.config.nameservers == ("1.1.1.1", "1.1.1.2", "1.1.1.3")
    assert decided.warnings == (DNSWarning("DNSConfigForming", "Nameserver limits were exceeded, some nameservers "
                                           "have been omitted, the applied nameserver line is: 1.1.1.1 1.1.1.2 1.1.1.3"),)


@pytest.mark.parametrize(("searches", "want"), [
    pytest.param([f"d{i}.example" for i in range(33)], [f"d{i}.example" for i in range(32)], id="33-paths"),
    pytest.param(["ok.example", "x" * 254, "y" * 253], ["ok.example", "y" * 253], id="a-path-over-253"),
    # 10 paths of 250 characters: 2509 characters joined; dropping the last two leaves 2007.
    pytest.param([f"{i}" + "z" * 249 for i in range(10)], [f"{i}" + "z" * 249 for i in range(8)], id="2048-chars"),
])
def test_search_limits(searches, want):
    pod = make_pod("None", dns_config={"nameservers": ["1.1.1.1"], "searches": searches})
    decided = pod_dns(pod, host=HOST, cluster_dns=CLUSTER, cluster_domain="cluster.local")
    assert list(decided.config.searches) == want
    assert decided.warnings == (DNSWarning("DNSConfigForming", "Search Line limits were exceeded, some search paths "
                                           f"have been omitted, the applied search line is: {' '.join(want)}"),)


def test_exactly_at_the_limits_nothing_is_cut():
    searches = [f"{i:02d}" + "z" * 61 for i in range(32)]  # 32 paths, 63 * 32 + 31 = 2047 characters
    pod = make_pod("None", dns_config={"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3"], "searches": searches})
    decided = pod_dns(pod, host=HOST, cluster_dns=CLUSTER, cluster_domain="cluster.local")
    assert list(decided.config.searches) == searches and decided.warnings == ()


def test_format_resolv_conf_as_containerd_writes_it():
    config = ResolvConf(("10.96.0.10", "1.1.1.1"), CLUSTER_SEARCH, ("ndots:5",))
    assert format_resolv_conf(config) == ("search ns1.svc.cluster.local svc.cluster.local cluster.local\n"
                                          "nameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:5\n")
    assert format_resolv_conf(ResolvConf(("1.1.1.1",))) == "nameserver 1.1.1.1\n"
    assert format_resolv_conf(ResolvConf()) == ""


LOCALHOST = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
             "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
ALIASES = [{"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}, {"ip": "10.1.2.4", "hostnames": ["baz"]}]


def test_managed_hosts_with_subdomain_and_host_aliases():
    pod = make_pod(name="web-0", hostname="db-0", subdomain="dbs")
    assert pod_hostname(pod) == "db-0" and pod_host_domain(pod, "cluster.local") == "dbs.ns1.svc.cluster.local"
    text = managed_hosts(["10.244.1.5"], pod_hostname(pod), pod_host_domain(pod, "cluster.local"), ALIASES)
    assert text == LOCALHOST + ("10.244.1.5\tdb-0.dbs.ns1.svc.cluster.local\tdb-0\n"
                                "\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n10.1.2.4\tbaz\n")


def test_managed_hosts_without_subdomain_or_aliases():
    pod = make_pod(name="web")
    assert pod_host_domain(pod, "cluster.local") == ""
    assert managed_hosts(["10.244.1.5"], pod_hostname(pod), "") == LOCALHOST + "10.244.1.5\tweb\n"


def test_a_long_pod_name_is_cut_to_a_hostname():
    assert pod_hostname(make_pod(name="a" * 62 + "-b")) == "a" * 62
    assert pod_hostname(make_pod(name="a" * 70)) == "a" * 63


def test_host_network_hosts_is_the_nodes_file_and_the_aliases():
    assert host_network_hosts("127.0.0.1 localhost\n", ALIASES[1:]) == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        "\n# Entries added by HostAliases.\n10.1.2.4\tbaz\n")
    assert host_network_hosts("127.0.0.1 localhost\n") == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n")


# -- PodEtcFiles ---------------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.events = []

    async def event(self, obj, event_type, reason, message, **kwargs):
        self.events.append((obj.get("kind") or kwargs.get("kind"), obj["metadata"]["name"], event_type, reason))


@pytest.fixture
def host_resolv(tmp_path):
    path = tmp_path / "host-resolv.conf"
    path.write_text("nameserver 10.255.255.53\nsearch corp.example\noptions ndots:2\n")
    return path


async def test_files_are_written_once_and_mounted_read_write(tmp_path, host_resolv):
    files = PodEtcFiles(tmp_path / "agent", cluster_dns=CLUSTER, resolv_conf=host_resolv)
    pod = make_pod(name="web", subdomain="www", hostAliases=ALIASES[1:])
    container = {"name": "c"}
    mounts = await files.mounts(pod, container, pod_ip="10.244.0.7")
    pod_dir = tmp_path / "agent" / "pods" / "u-1"
    assert mounts == (Mount(str(pod_dir / "etc-hosts"), "/etc/hosts"),
                      Mount(str(pod_dir / "resolv.conf"), "/etc/resolv.conf"))
    assert (pod_dir / "etc-hosts").read_text() == LOCALHOST + (
        "10.244.0.7\tweb.www.ns1.svc.cluster.local\tweb\n\n# Entries added by HostAliases.\n10.1.2.4\tbaz\n")
    assert (pod_dir / "resolv.conf").read_text() == (
        "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.96.0.10\noptions ndots:5\n")
    assert oct(os.stat(pod_dir / "etc-hosts").st_mode & 0o777) == "0o644"
    # A container's edits stay: the next container (or a restart) finds the pod's files as they are.
    (pod_dir / "etc-hosts").write_text("edited\n")
    assert await files.mounts(pod, {"name": "d"}, pod_ip="10.244.0.7") == mounts
    assert (pod_dir / "etc-hosts").read_text() == "edited\n"
    assert files.pods_on_disk() == ["u-1"]
    await files.remove("u-1")
    assert not pod_dir.exists() and files.pods_on_disk() == []


async def test_a_containers_own_mounts_and_a_missing_pod_ip_skip_the_managed_files(tmp_path, host_resolv):
    files = PodEtcFiles(tmp_path / "agent", cluster_dns=CLUSTER, resolv_conf=host_resolv)
    pod = make_pod()
    own_hosts = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc/hosts"}]}
    assert [m.container_path for m in await files.mounts(pod, own_hosts, pod_ip="10.0.0.1")] == ["/etc/resolv.conf"]
    own_resolv = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc//resolv.conf/"}]}
    assert [m.container_path for m in await files.mounts(pod, own_resolv, pod_ip="10.0.0.1")] == ["/etc/hosts"]
    other = make_pod()
    other["metadata"]["uid"] = "u-2"
    assert [m.container_path for m in await files.mounts(other, {"name": "c"}, pod_ip="")] == ["/etc/resolv.conf"]
    assert not (tmp_path / "agent" / "pods" / "u-2" / "etc-hosts").exists()


async def test_host_network_pods_get_the_hosts_file_of_the_node(tmp_path, host_resolv):
    files = PodEtcFiles(tmp_path / "agent", cluster_dns=CLUSTER, resolv_conf=host_resolv)
    pod = make_pod("ClusterFirst", host_network=True, hostAliases=ALIASES[:1])
    await files.mounts(pod, {"name": "c"}, pod_ip="192.168.1.10")
    pod_dir = tmp_path / "agent" / "pods" / "u-1"
    node_hosts = await asyncio.to_thread(Path("/etc/hosts").read_text)
    assert (pod_dir / "etc-hosts").read_text() == host_network_hosts(node_hosts, ALIASES[:1])
    # ClusterFirst on the host's network is Default: the host's configuration, written as containerd does.
    assert (pod_dir / "resolv.conf").read_text() == "search corp.example\nnameserver 10.255.255.53\noptions ndots:2\n"


async def test_missing_cluster_dns_is_a_warning_on_the_node_and_the_pod(tmp_path, host_resolv):
    recorder = Recorder()
    files = PodEtcFiles(tmp_path / "agent", resolv_conf=host_resolv, recorder=recorder, node_name="n1")
    await files.mounts(make_pod(), {"name": "c"}, pod_ip="10.0.0.1")
    assert recorder.events == [("Node", "n1", "Warning", "MissingClusterDNS"),
                               ("Pod", "web", "Warning", "MissingClusterDNS")]
    assert (tmp_path / "agent" / "pods" / "u-1" / "resolv.conf").read_text() == (
        "search corp.example\nnameserver 10.255.255.53\noptions ndots:2\n")
    await files.mounts(make_pod(), {"name": "d"}, pod_ip="10.0.0.1")
    assert len(recorder.events) == 2  # once per pod, when its file is made


async def test_nothing_to_say_copies_the_hosts_resolv_conf_and_a_missing_one_is_a_config_error(tmp_path):
    host = tmp_path / "resolv"
    host.write_text("# nothing but comments\n")
    files = PodEtcFiles(tmp_path / "agent", cluster_dns=CLUSTER, resolv_conf=host)
    await files.mounts(make_pod("Default"), {"name": "c"}, pod_ip="10.0.0.1")
    assert (tmp_path / "agent" / "pods" / "u-1" / "resolv.conf").read_text() == "# nothing but comments\n"
    missing = PodEtcFiles(tmp_path / "other", cluster_dns=CLUSTER, resolv_conf=tmp_path / "nope")
    with pytest.raises(ContainerConfigError, match="No such file"):
        await missing.mounts(make_pod(), {"name": "c"}, pod_ip="10.0.0.1")
    host.write_text("nameserver\n")
    broken = PodEtcFiles(tmp_path / "third", cluster_dns=CLUSTER, resolv_conf=host)
    with pytest.raises(ContainerConfigError, match="Error: nameserver list is empty"):
        await broken.mounts(make_pod(), {"name": "c"}, pod_ip="10.0.0.1")
