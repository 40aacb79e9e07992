"""The node IPAM allocator's CIDR set (upstream's cidrset), table-driven and property-based."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.controllers._cidrset import CIDRRangeFull, CidrSet
from timoner.controllers.nodeipam import pod_cidrs


def test_blocks_are_handed_out_in_order_and_a_released_one_only_after_a_full_turn():
    cidrs = CidrSet("10.0.0.0/22", 24)
    assert cidrs.max_cidrs == 4
    assert [cidrs.allocate_next() for _ in range(3)] == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
    cidrs.release("10.0.0.0/24")
    assert cidrs.allocate_next() == "10.0.3.0/24"  # the next candidate, not the one just freed
    assert cidrs.allocate_next() == "10.0.0.0/24"  # wrapped around
    with pytest.raises(CIDRRangeFull, match="no remaining CIDRs left"):
        cidrs.allocate_next()
    assert cidrs.allocated == 4


def test_occupied_blocks_are_skipped_and_wider_or_narrower_cidrs_mark_what_they_overlap():
    cidrs = CidrSet("100.64.0.0/16", 24)
    cidrs.occupy("100.64.0.0/24")
    cidrs.occupy("100.64.1.128/25")  # part of a block takes the block
    assert cidrs.allocate_next() == "100.64.2.0/24"
    cidrs.occupy("100.64.4.0/23")  # two blocks
    assert cidrs.is_used("100.64.5.0/24") and not cidrs.is_used("100.64.3.0/24")
    cidrs.occupy("100.64.0.0/16")  # the whole range
    with pytest.raises(CIDRRangeFull):
        cidrs.allocate_next()
    cidrs.release("100.64.7.0/24")
    assert cidrs.allocate_next() == "100.64.7.0/24"


@pytest.mark.parametrize("cidr", ["10.1.0.0/24", "fd00::/64", "not-a-cidr"])
def test_a_cidr_outside_the_range_is_refused(cidr):
    with pytest.raises(ValueError):
        CidrSet("10.0.0.0/16", 24).occupy(cidr)


@pytest.mark.parametrize(("cluster", "mask"), [("10.0.0.0/16", 8), ("10.0.0.0/8", 25), ("10.0.0.0/16", 33)])
def test_a_mask_that_does_not_fit_the_range_is_refused(cluster, mask):
    with pytest.raises(ValueError, match="node CIDR size is too big"):
        CidrSet(cluster, mask)


def test_ipv6_ranges_work_too():
    cidrs = CidrSet("fd00:10::/56", 64)
    assert cidrs.max_cidrs == 256
    assert [cidrs.allocate_next() for _ in range(2)] == ["fd00:10::/64", "fd00:10:0:1::/64"]


@given(st.lists(st.sampled_from(["allocate", "release"]), max_size=40), st.integers(22, 26))
def test_allocations_are_distinct_blocks_of_the_range(ops, mask):
    cidrs = CidrSet("10.8.0.0/22", mask)
    cluster = ipaddress.ip_network("10.8.0.0/22")
    held: list[str] = []
    for op in ops:
        if op == "allocate":
            try:
                cidr = cidrs.allocate_next()
            except CIDRRangeFull:
                assert len(held) == cidrs.max_cidrs
                continue
            network = ipaddress.ip_network(cidr)
            assert network.prefixlen == mask and network.subnet_of(cluster) and cidr not in held
            held.append(cidr)
        elif held:
            cidrs.release(held.pop(0))
        assert cidrs.allocated == len(held)


@pytest.mark.parametrize(("spec", "want"), [
    ({}, []),
    ({"podCIDR": "10.0.0.0/24"}, ["10.0.0.0/24"]),
    ({"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24", "fd00::/64"]}, ["10.0.0.0/24", "fd00::/64"]),
])
def test_pod_cidrs(spec, want):
    assert pod_cidrs({"spec": spec}) == want
