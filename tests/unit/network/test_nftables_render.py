"""render(): the nft commands for a route table, read back rule by rule; write_sysctls on a fake /proc/sys."""

from __future__ import annotations

import re

import pytest

from timoner.network.nftables import SYSCTLS, render, write_sysctls
from timoner.network.routes import Endpoint, Frontend, FrontendKind, RouteTable, ServiceRoute

A = Endpoint("100.64.1.2", 8080)
B = Endpoint("100.64.1.3", 8080)
CLUSTER = Frontend("100.65.0.10", 80)
NODE_PORTS = (Frontend("100.64.2.1", 30080, FrontendKind.NODE_PORT),
              Frontend("127.0.0.1", 30080, FrontendKind.NODE_PORT))


def route(name: str = "web", *, port_name: str = "http", protocol: str = "TCP", frontends=(CLUSTER,),
          endpoints=(A, B), local=(A,), **options) -> ServiceRoute:
    return ServiceRoute(namespace="default", service=name, port_name=port_name, protocol=protocol,
                        frontends=tuple(frontends), endpoints=tuple(endpoints), local_endpoints=tuple(local),
                        **options)


def parse(text: str, table: str = "timoner") -> dict:
    """chains: name -> rules; elements: map/set -> elements; declared: `add set|map|chain` lines."""
    chains: dict[str, list[str]] = {}
    elements: dict[str, list[str]] = {}
    declared: list[str] = []
    for line in text.splitlines():
        if m := re.fullmatch(rf"add rule ip {table} (\S+) (.*)", line):
            chains.setdefault(m[1], []).append(m[2])
        elif m := re.fullmatch(rf"add element ip {table} (\S+) \{{ (.*) \}}", line):
            elements.setdefault(m[1], []).extend(e.strip() for e in m[2].split(", "))
        elif m := re.fullmatch(rf"add (set|map|chain) ip {table} (\S+)(.*)", line):
            declared.append(f"{m[1]} {m[2]}{m[3]}")
            if m[1] == "chain":
                chains.setdefault(m[2], [])
    return {"chains": chains, "elements": elements, "declared": declared, "lines": text.splitlines()}


HASHED = re.compile(r"(service|local|external|endpoint)-[A-Z2-7]{8}-")


def per_service(parsed: dict, *kinds: str) -> list[str]:
    """The per-service-port chains (of these kinds: `service-`, `endpoint-`, ...)."""
    return [n for n in parsed["chains"] if (m := HASHED.match(n)) and (not kinds or f"{m[1]}-" in kinds)]


def chain(parsed: dict, prefix: str, suffix: str = "") -> tuple[str, list[str]]:
    """The one per-service chain whose name starts with `prefix` (`service-`, ...) and ends with `suffix`."""
    found = [(n, parsed["chains"][n]) for n in per_service(parsed, prefix) if n.endswith(suffix)]
    assert len(found) == 1, (prefix, suffix, list(parsed["chains"]))
    return found[0]


def goto_target(element: str) -> str:
    return element.split(" : goto ")[1]


# -- the fixed skeleton -----------------------------------------------------------------


def test_a_first_render_deletes_and_recreates_its_own_table_in_one_text():
    lines = render(RouteTable(), name="mine").splitlines()
    assert lines[:3] == ["add table ip mine", "delete table ip mine", "add table ip mine"]
    assert all(" ip mine " in line or line.endswith(" ip mine") for line in lines)
    assert not any(line.startswith("flush") for line in lines)


def test_hooks_dispatch_to_services_and_masquerade_marked_packets():
    parsed = parse(render(RouteTable()))
    declared = parsed["declared"]
    assert "chain nat-prerouting { type nat hook prerouting priority -100; policy accept; }" in declared
    assert "chain nat-output { type nat hook output priority -100; policy accept; }" in declared
    assert "chain nat-postrouting { type nat hook postrouting priority 100; policy accept; }" in declared
    chains = parsed["chains"]
    assert chains["nat-prerouting"] == chains["nat-output"] == ["jump services"]
    assert chains["nat-postrouting"] == ["jump masquerading"]
    assert chains["services"] == ["ip daddr . meta l4proto . th dport vmap @service-ips"]
    assert chains["mark-for-masquerade"] == ["meta mark set meta mark or 0x4000"]
    assert chains["masquerading"] == ["meta mark & 0x4000 == 0 return", "meta mark set meta mark xor 0x4000",
                                      "masquerade fully-random"]


def test_filter_chains_check_new_connections_for_services_without_endpoints():
    parsed = parse(render(RouteTable()))
    chains = parsed["chains"]
    for hook in ("input", "forward", "output"):
        assert (f"chain filter-{hook} {{ type filter hook {hook} priority -110; policy accept; }}"
                in parsed["declared"])
        assert "ct state new jump service-endpoints-check" in chains[f"filter-{hook}"]
    assert chains["service-endpoints-check"] == ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]
    assert chains["reject-chain"] == ["meta l4proto tcp reject with tcp reset", "reject with icmp port-unreachable"]
    # Unknown ports of a cluster IP: after DNAT, so only traffic no service port took.
    assert "ct state new jump cluster-ips-check" in chains["filter-forward"]
    assert chains["filter-output-post-dnat"] == ["ct state new jump cluster-ips-check"]
    assert chains["cluster-ips-check"] == ["ip daddr @cluster-ips goto reject-chain"]


def test_other_machines_may_not_reach_loopback_addresses_except_through_a_dnat():
    chains = parse(render(RouteTable()))["chains"]
    assert "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop" in chains["filter-input"]


# -- cluster IPs ------------------------------------------------------------------------


def test_a_cluster_ip_goes_to_a_service_chain_spreading_over_endpoint_chains():
    parsed = parse(render(RouteTable((route(),))))
    service_name, service_rules = chain(parsed, "service-", "-default/web/tcp/http")
    assert parsed["elements"]["service-ips"] == [f"100.65.0.10 . tcp . 80 : goto {service_name}"]
    ep_a, rules_a = chain(parsed, "endpoint-", "-default/web/tcp/http__100.64.1.2/8080")
    ep_b, _ = chain(parsed, "endpoint-", "-default/web/tcp/http__100.64.1.3/8080")
    assert service_rules == [f"numgen random mod 2 vmap {{ 0 : goto {ep_a}, 1 : goto {ep_b} }}"]
    assert rules_a == ["ip saddr 100.64.1.2 jump mark-for-masquerade",  # hairpin
                       "meta l4proto tcp dnat to 100.64.1.2:8080"]
    assert parsed["elements"]["cluster-ips"] == ["100.65.0.10"]
    assert "no-endpoint-services" not in parsed["elements"]
    assert per_service(parsed, "external-", "local-") == []
    assert not any(d.startswith("set affinity-") for d in parsed["declared"])


def test_udp_routes_match_and_dnat_udp():
    parsed = parse(render(RouteTable((route("dns", port_name="dns", protocol="UDP",
                                            frontends=(Frontend("100.65.0.53", 53),), endpoints=(A,)),))))
    service_name, _ = chain(parsed, "service-", "-default/dns/udp/dns")
    assert parsed["elements"]["service-ips"] == [f"100.65.0.53 . udp . 53 : goto {service_name}"]
    _, rules = chain(parsed, "endpoint-")
    assert rules[-1] == "meta l4proto udp dnat to 100.64.1.2:8080"


def test_session_affinity_looks_clients_up_before_the_random_choice_and_records_them():
    parsed = parse(render(RouteTable((route(affinity_timeout=600),))))
    sets = [d for d in parsed["declared"] if d.startswith("set affinity-")]
    assert len(sets) == 2
    assert all(d.endswith("{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }") for d in sets)
    _, service_rules = chain(parsed, "service-")
    ep_a, rules_a = chain(parsed, "endpoint-", "__100.64.1.2/8080")
    set_a = re.search(r"update @(\S+) \{ ip saddr \}", "\n".join(rules_a))[1]
    assert set_a.startswith("affinity-") and set_a.endswith("-default/web/tcp/http__100.64.1.2/8080")
    assert service_rules[0] == f"ip saddr @{set_a} goto {ep_a}"
    assert service_rules[2].startswith("numgen random mod 2 vmap")
    assert rules_a == ["ip saddr 100.64.1.2 jump mark-for-masquerade", f"update @{set_a} {{ ip saddr }}",
                       "meta l4proto tcp dnat to 100.64.1.2:8080"]


def test_a_new_affinity_timeout_means_a_new_set():
    def sets(timeout):
        return {d.split()[1] for d in parse(render(RouteTable((route(affinity_timeout=timeout),))))["declared"]
                if d.startswith("set affinity-")}
    assert sets(600).isdisjoint(sets(60))


def test_internal_traffic_policy_local_sends_cluster_ips_to_the_local_chain():
    parsed = parse(render(RouteTable((route(internal_policy_local=True),))))
    local_name, local_rules = chain(parsed, "local-", "-default/web/tcp/http")
    assert parsed["elements"]["service-ips"] == [f"100.65.0.10 . tcp . 80 : goto {local_name}"]
    ep_a, _ = chain(parsed, "endpoint-", "__100.64.1.2/8080")
    assert local_rules == [f"numgen random mod 1 vmap {{ 0 : goto {ep_a} }}"]
    assert per_service(parsed, "service-") == []
    assert not any("100.64.1.3" in n for n in parsed["chains"])


def test_internal_traffic_policy_local_without_local_endpoints_drops():
    parsed = parse(render(RouteTable((route(internal_policy_local=True, local=()),))))
    assert parsed["elements"]["no-endpoint-services"] == ["100.65.0.10 . tcp . 80 : drop"]
    assert "service-ips" not in parsed["elements"]


# -- no endpoints -----------------------------------------------------------------------


def test_a_service_without_endpoints_is_rejected_on_every_frontend():
    parsed = parse(render(RouteTable((route(frontends=(CLUSTER, *NODE_PORTS), endpoints=(), local=()),))))
    assert parsed["elements"]["no-endpoint-services"] == [
        "100.65.0.10 . tcp . 80 : goto reject-chain",
        "100.64.2.1 . tcp . 30080 : goto reject-chain",
        "127.0.0.1 . tcp . 30080 : goto reject-chain",
    ]
    assert "service-ips" not in parsed["elements"]
    assert parsed["elements"]["cluster-ips"] == ["100.65.0.10"]
    assert per_service(parsed) == []


# -- external traffic -------------------------------------------------------------------


def test_node_ports_with_cluster_policy_masquerade_and_go_to_the_service_chain():
    parsed = parse(render(RouteTable((route(frontends=(CLUSTER, *NODE_PORTS)),))))
    service_name, _ = chain(parsed, "service-")
    external_name, external_rules = chain(parsed, "external-", "-default/web/tcp/http")
    assert parsed["elements"]["service-ips"] == [
        f"100.65.0.10 . tcp . 80 : goto {service_name}",
        f"100.64.2.1 . tcp . 30080 : goto {external_name}",
        f"127.0.0.1 . tcp . 30080 : goto {external_name}",
    ]
    assert external_rules == ["jump mark-for-masquerade", f"goto {service_name}"]


def test_external_ips_go_to_the_external_chain():
    frontends = (CLUSTER, Frontend("100.64.9.9", 80, FrontendKind.EXTERNAL_IP),
                 Frontend("100.64.8.1", 80, FrontendKind.LOAD_BALANCER))
    parsed = parse(render(RouteTable((route(frontends=frontends),))))
    external_name, _ = chain(parsed, "external-")
    targets = [e for e in parsed["elements"]["service-ips"] if e.startswith(("100.64.9.9 ", "100.64.8.1 "))]
    assert [goto_target(e) for e in targets] == [external_name, external_name]
    assert parsed["elements"]["cluster-ips"] == ["100.65.0.10"]


def test_external_policy_local_keeps_the_source_and_uses_local_endpoints_except_for_the_node_itself():
    parsed = parse(render(RouteTable((route(frontends=(CLUSTER, *NODE_PORTS), external_policy_local=True),))))
    service_name, _ = chain(parsed, "service-")
    local_name, local_rules = chain(parsed, "local-")
    _, external_rules = chain(parsed, "external-")
    assert external_rules == ["fib saddr type local jump mark-for-masquerade",
                              f"fib saddr type local goto {service_name}",
                              f"goto {local_name}"]
    assert local_rules[-1].startswith("numgen random mod 1 vmap")
    # Cluster IPs keep Cluster policy.
    assert goto_target(parsed["elements"]["service-ips"][0]) == service_name


def test_external_policy_local_without_local_endpoints_drops_other_machines_traffic():
    parsed = parse(render(RouteTable((route(frontends=(CLUSTER, *NODE_PORTS), external_policy_local=True,
                                            local=()),))))
    _, external_rules = chain(parsed, "external-")
    assert external_rules[-1] == "drop"
    assert per_service(parsed, "local-") == []
    assert "no-endpoint-services" not in parsed["elements"]


def test_both_policies_local_still_send_the_nodes_own_traffic_anywhere():
    parsed = parse(render(RouteTable((route(frontends=(CLUSTER, *NODE_PORTS), internal_policy_local=True,
                                            external_policy_local=True),))))
    service_name, service_rules = chain(parsed, "service-")
    local_name, _ = chain(parsed, "local-")
    assert service_rules[-1].startswith("numgen random mod 2 vmap")
    assert goto_target(parsed["elements"]["service-ips"][0]) == local_name


def test_an_address_and_port_two_services_claim_goes_to_the_first():
    shared = Frontend("100.64.9.9", 80, FrontendKind.EXTERNAL_IP)
    routes = (route("a", frontends=(Frontend("100.65.0.1", 80), shared)),
              route("b", frontends=(Frontend("100.65.0.2", 80), shared), endpoints=(), local=()))
    parsed = parse(render(RouteTable(routes)))
    external_a, _ = chain(parsed, "external-", "-default/a/tcp/http")
    keys = [e.split(" : ")[0] for m in ("service-ips", "no-endpoint-services") for e in parsed["elements"][m]]
    assert sorted(keys) == ["100.64.9.9 . tcp . 80", "100.65.0.1 . tcp . 80", "100.65.0.2 . tcp . 80"]
    assert f"100.64.9.9 . tcp . 80 : goto {external_a}" in parsed["elements"]["service-ips"]


# -- names ------------------------------------------------------------------------------


def test_names_carry_a_hash_so_similar_services_do_not_collide():
    routes = (route("a-b", port_name="c"), route("a", port_name="b-c", frontends=(Frontend("100.65.0.11", 80),)))
    parsed = parse(render(RouteTable(routes)))
    names = per_service(parsed, "service-")
    assert sorted(n.split("-", 2)[2] for n in names) == ["default/a-b/tcp/c", "default/a/tcp/b-c"]


def test_the_longest_legal_names_fit_nfts_limit():
    long = "x" * 63
    routes = tuple(ServiceRoute(namespace=long, service=long[:62] + str(i), port_name="p" * 15, protocol="TCP",
                                frontends=(Frontend(f"100.65.0.{i + 1}", 80),),
                                endpoints=(Endpoint("100.64.100.100", 65535),)) for i in range(2))
    parsed = parse(render(RouteTable(routes)))
    endpoints = per_service(parsed, "endpoint-")
    assert len(endpoints) == 2 and all(len(n) <= 200 for n in parsed["chains"])


def test_rendering_is_deterministic():
    table = RouteTable((route(affinity_timeout=60, frontends=(CLUSTER, *NODE_PORTS)), route("other")))
    assert render(table) == render(table)


# -- updates in place -------------------------------------------------------------------


def test_an_update_flushes_in_place_deletes_what_is_gone_and_keeps_affinity_sets():
    old = RouteTable((route(affinity_timeout=60), route("gone", frontends=(Frontend("100.65.0.11", 80),))))
    new = RouteTable((route(affinity_timeout=60, endpoints=(A,), local=(A,)),))
    text = render(new, previous=old)
    lines = text.splitlines()
    assert "delete table ip timoner" not in lines
    deleted = [line for line in lines if line.startswith("delete ")]
    assert sorted(line.split()[1] for line in deleted) == ["chain", "chain", "chain", "chain", "set"]
    assert any(line.endswith("-default/web/tcp/http__100.64.1.3/8080") and " set " in line for line in deleted)
    assert any(line.endswith("-default/gone/tcp/http") for line in deleted)
    flushed = [line for line in lines if line.startswith("flush ")]
    assert "flush map ip timoner service-ips" in flushed and "flush set ip timoner cluster-ips" in flushed
    assert not any("affinity-" in line for line in flushed)  # clients keep their endpoint
    # Every stale chain is emptied before it is deleted, and nothing is added before the deletes.
    for line in deleted:
        if " chain " in line:
            assert lines.index(line.replace("delete", "flush", 1)) < lines.index(line)
    first_add_rule = next(i for i, line in enumerate(lines) if line.startswith("add rule"))
    assert all(lines.index(line) < first_add_rule for line in deleted)
    # The new state itself is the same as a fresh render's.
    assert parse(text)["chains"] == parse(render(new))["chains"]
    assert parse(text)["elements"] == parse(render(new))["elements"]


def test_an_update_to_the_same_table_deletes_nothing():
    table = RouteTable((route(affinity_timeout=60),))
    assert not any(line.startswith("delete") for line in render(table, previous=table).splitlines())


# -- sysctls ----------------------------------------------------------------------------


def fake_proc_sys(tmp_path, *, bridge: bool):
    for key in SYSCTLS:
        if key.startswith("net.bridge") and not bridge:
            continue
        path = tmp_path.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0\n")
    return tmp_path


def test_write_sysctls_sets_forwarding_localnet_and_bridge_netfilter(tmp_path):
    root = fake_proc_sys(tmp_path, bridge=True)
    write_sysctls(SYSCTLS, root=root)
    assert (root / "net/ipv4/ip_forward").read_text() == "1\n"
    assert (root / "net/ipv4/conf/all/route_localnet").read_text() == "1\n"
    assert (root / "net/bridge/bridge-nf-call-iptables").read_text() == "1\n"


def test_write_sysctls_skips_the_bridge_setting_without_br_netfilter(tmp_path):
    root = fake_proc_sys(tmp_path, bridge=False)
    write_sysctls(SYSCTLS, root=root)
    assert not (root / "net/bridge").exists()
    assert (root / "net/ipv4/ip_forward").read_text() == "1\n"


def test_write_sysctls_fails_for_a_missing_required_setting(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_sysctls({"net.ipv4.ip_forward": "1"}, root=tmp_path)
