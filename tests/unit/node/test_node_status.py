"""Node status computation: conditions with upstream's reasons and times, and the change test."""

from __future__ import annotations

from pathlib import Path

from timoner.node.config import AgentConfig
from timoner.node.machine import Machine, Usage
from timoner.node.status import node_conditions, node_status, status_changed

GI = 1024**3
CONFIG = AgentConfig(node_name="n1", root_dir=Path("/nonexistent"), runtime="hollow", kubelet_port=11250)
MACHINE = Machine(hostname="h", cpus=2, memory_bytes=4 * GI, storage_bytes=50 * GI, kernel_version="6.1",
                  os_image="Debian", operating_system="linux", architecture="arm64", boot_id="b",
                  machine_id="m", system_uuid="u")
HEALTHY = Usage(memory_available=2 * GI, storage_available=25 * GI, storage_capacity=50 * GI, processes=10,
                pid_max=32768)
LOW_MEMORY = Usage(memory_available=1, storage_available=25 * GI, storage_capacity=50 * GI, processes=10,
                   pid_max=32768)


def by_type(conditions):
    return {c["type"]: c for c in conditions}


def test_first_conditions_transition_now():
    conditions = node_conditions([], HEALTHY, CONFIG, now="2026-01-01T00:00:00Z")
    assert [c["type"] for c in conditions] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert [(c["status"], c["reason"]) for c in conditions] == [
        ("False", "KubeletHasSufficientMemory"), ("False", "KubeletHasNoDiskPressure"),
        ("False", "KubeletHasSufficientPID"), ("True", "KubeletReady")]
    assert all(c["lastTransitionTime"] == c["lastHeartbeatTime"] == "2026-01-01T00:00:00Z" for c in conditions)


def test_heartbeat_moves_but_transition_stays_until_a_flip():
    first = node_conditions([], HEALTHY, CONFIG, now="2026-01-01T00:00:00Z")
    second = by_type(node_conditions(first, LOW_MEMORY, CONFIG, now="2026-01-01T00:05:00Z"))
    assert second["Ready"]["lastHeartbeatTime"] == "2026-01-01T00:05:00Z"
    assert second["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    memory = second["MemoryPressure"]
    assert (memory["status"], memory["reason"], memory["message"]) == (
        "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
    assert memory["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_not_ready_reasons_become_the_message():
    ready = by_type(node_conditions([], HEALTHY, CONFIG, now="t", not_ready=["runtime down", "no network"]))["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "KubeletNotReady",
                                                                   "runtime down, no network")


def test_status_carries_node_info_and_endpoint():
    status = node_status(MACHINE, HEALTHY, CONFIG, node_ip="10.0.0.5", now="t")
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 11250}}
    assert status["nodeInfo"]["containerRuntimeVersion"] == "timoner-hollow://0.1"
    assert status["nodeInfo"]["architecture"] == "arm64"
    assert status["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"},
                                   {"type": "Hostname", "address": "h"}]


def test_status_changed_ignores_heartbeats_and_foreign_conditions():
    reported = node_status(MACHINE, HEALTHY, CONFIG, node_ip="10.0.0.5", now="2026-01-01T00:00:00Z")
    later = node_status(MACHINE, HEALTHY, CONFIG, node_ip="10.0.0.5", now="2026-01-01T00:00:10Z",
                        previous_conditions=reported["conditions"])
    foreign = {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}
    with_foreign = {**reported, "conditions": [*reported["conditions"], foreign], "images": []}
    assert not status_changed(reported, later)
    assert not status_changed(with_foreign, later)


def test_status_changed_sees_real_changes():
    reported = node_status(MACHINE, HEALTHY, CONFIG, node_ip="10.0.0.5", now="a")
    assert status_changed(reported, node_status(MACHINE, LOW_MEMORY, CONFIG, node_ip="10.0.0.5", now="a",
                                                previous_conditions=reported["conditions"]))
    assert status_changed(reported, node_status(MACHINE, HEALTHY, CONFIG, node_ip="10.0.0.6", now="a",
                                                previous_conditions=reported["conditions"]))
    assert status_changed({}, reported)
