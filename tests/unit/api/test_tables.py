"""Table output against upstream printers.go (v1.32): columns, cells and the Table envelope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from timoner.api.registry import BUILTIN, ResourceInfo, builtin_index
from timoner.api.tables import column_definitions, human_duration, row_cells, to_table

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
INDEX = builtin_index()


def info(group: str, version: str, plural: str) -> ResourceInfo:
    return INDEX[(group, version, plural)]


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, created: float = 600, **extra) -> dict:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(created), **extra}


# --- human_duration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (-1, "0s"),
        (-1.5, "0s"),
        (-2, "<invalid>"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
        (20 * 365 * 86400, "20y"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


# --- pods -------------------------------------------------------------------------------------------


def running(name: str, *, restarts: int = 0, finished: float | None = None, ready: bool = True) -> dict:
    status = {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(60)}},
    }
    if finished is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(finished)}}
    return status


def pod(*, spec: dict | None = None, status: dict | None = None, **metadata) -> dict:
    containers = [{"name": "web", "image": "nginx"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta("web-1", **metadata),
        "spec": {"containers": containers, **(spec or {})},
        "status": status or {},
    }


TWO_CONTAINERS = {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "fluentbit"}]}
TWO_INITS = {"initContainers": [{"name": "migrate", "image": "m"}, {"name": "seed", "image": "s"}]}

POD_CASES = [
    (
        "running-with-restarts",
        pod(
            spec={**TWO_CONTAINERS, "nodeName": "node-1"},
            status={
                "phase": "Running",
                "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running("web", restarts=2, finished=300), running("log")],
            },
        ),
        ["web-1", "2/2", "Running", "2 (5m ago)", "10m", "10.244.0.5", "node-1", "<none>", "<none>"],
    ),
    (
        "crash-loop-back-off",
        pod(
            status={
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "web",
                        "ready": False,
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(30)}
                        },
                    }
                ],
            }
        ),
        ["web-1", "0/1", "CrashLoopBackOff", "4 (30s ago)", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "init-one-of-two",
        pod(
            spec=TWO_INITS,
            status={
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "False"}],
                "initContainerStatuses": [
                    {
                        "name": "migrate",
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    },
                    {"name": "seed", "restartCount": 0, "state": {"running": {}}},
                ],
                "containerStatuses": [
                    {"name": "web", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
                ],
            },
        ),
        ["web-1", "0/1", "Init:1/2", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "init-crash-loop-counts-init-restarts",
        pod(
            spec=TWO_INITS,
            status={
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "migrate",
                        "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(60)}},
                    },
                    {"name": "seed", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
                ],
            },
        ),
        [
            "web-1",
            "0/1",
            "Init:CrashLoopBackOff",
            "3 (60s ago)",
            "10m",
            "<none>",
            "<none>",
            "<none>",
            "<none>",
        ],
    ),
    (
        "init-error-reason",
        pod(
            spec=TWO_INITS,
            status={
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "migrate", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}},
                ],
            },
        ),
        ["web-1", "0/1", "Init:Error", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "init-exit-code-without-reason",
        pod(
            spec=TWO_INITS,
            status={"initContainerStatuses": [{"name": "migrate", "state": {"terminated": {"exitCode": 2}}}]},
        ),
        ["web-1", "0/1", "Init:ExitCode:2", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "init-signal-without-reason",
        pod(
            spec=TWO_INITS,
            status={
                "initContainerStatuses": [
                    {"name": "migrate", "state": {"terminated": {"exitCode": 137, "signal": 9}}}
                ]
            },
        ),
        ["web-1", "0/1", "Init:Signal:9", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "pod-initializing-after-inits",
        pod(
            spec=TWO_INITS,
            status={
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "seed", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                ],
                "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "PodInitializing"}}}],
            },
        ),
        ["web-1", "0/1", "PodInitializing", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "terminating",
        pod(
            deletionTimestamp=ago(5),
            status={"phase": "Running", "containerStatuses": [running("web")]},
        ),
        ["web-1", "1/1", "Terminating", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "deleted-on-lost-node-is-unknown",
        pod(
            deletionTimestamp=ago(5),
            status={"phase": "Running", "reason": "NodeLost", "containerStatuses": [running("web")]},
        ),
        ["web-1", "1/1", "Unknown", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "completed",
        pod(
            status={
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "web",
                        "ready": False,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            }
        ),
        ["web-1", "0/1", "Completed", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "deleting-a-terminal-pod-keeps-its-reason",
        pod(
            deletionTimestamp=ago(5),
            status={
                "phase": "Failed",
                "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 137}}}],
            },
        ),
        ["web-1", "0/1", "ExitCode:137", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "completed-container-beside-running-one-with-ready-condition",
        pod(
            spec=TWO_CONTAINERS,
            status={
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "web", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running("log"),
                ],
            },
        ),
        ["web-1", "1/2", "Running", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "completed-container-beside-running-one-not-ready",
        pod(
            spec=TWO_CONTAINERS,
            status={
                "phase": "Running",
                "containerStatuses": [
                    {"name": "web", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running("log"),
                ],
            },
        ),
        ["web-1", "1/2", "NotReady", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "sidecar-counts-in-ready-and-restarts",
        pod(
            spec={"initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]},
            status={
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {**running("proxy", restarts=1, finished=150), "started": True},
                ],
                "containerStatuses": [running("web")],
            },
        ),
        ["web-1", "2/2", "Running", "1 (2m30s ago)", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "scheduling-gated",
        pod(
            spec={"schedulingGates": [{"name": "example.com/quota"}]},
            status={
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            },
        ),
        ["web-1", "0/1", "SchedulingGated", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "evicted",
        pod(status={"phase": "Failed", "reason": "Evicted", "message": "low on memory"}, created=3 * 86400),
        ["web-1", "0/1", "Evicted", "0", "3d", "<none>", "<none>", "<none>", "<none>"],
    ),
    (
        "readiness-gates-and-nominated-node",
        pod(
            spec={
                "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
            },
            status={
                "phase": "Pending",
                "nominatedNodeName": "node-2",
                "conditions": [
                    {"type": "example.com/lb", "status": "True"},
                    {"type": "example.com/dns", "status": "False"},
                ],
            },
        ),
        ["web-1", "0/1", "Pending", "0", "10m", "<none>", "<none>", "node-2", "1/2"],
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_cells(obj: dict, expected: list) -> None:
    assert row_cells(info("", "v1", "pods"), obj, now=NOW) == expected


# --- every other printer, table-driven ----------------------------------------------------------------

NODE_NOT_READY = {
    "metadata": {
        "name": "cp-1",
        "creationTimestamp": ago(51 * 3600),
        "labels": {
            "node-role.kubernetes.io/control-plane": "",
            "node-role.kubernetes.io/worker": "",
            "node-role.kubernetes.io/": "",
            "kubernetes.io/role": "master",
            "kubernetes.io/hostname": "cp-1",
        },
    },
    "spec": {"unschedulable": True},
    "status": {
        "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
        "addresses": [
            {"type": "Hostname", "address": "cp-1"},
            {"type": "InternalIP", "address": "192.168.1.10"},
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.32.0",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "kernelVersion": "6.1.0-18-amd64",
            "containerRuntimeVersion": "timoner://0.1.0",
        },
    },
}

DEPLOYMENT = {
    "metadata": meta("web", created=200),
    "spec": {
        "replicas": 3,
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        },
        "template": {
            "spec": {
                "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "fluentbit"}]
            }
        },
    },
    "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
}

NODE_PORT_SERVICE = {
    "metadata": meta("web", created=5),
    "spec": {
        "type": "NodePort",
        "clusterIP": "10.96.0.15",
        "clusterIPs": ["10.96.0.15"],
        "selector": {"app": "web", "tier": "frontend"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 30443, "protocol": "TCP"},
        ],
    },
}

COMPLETED_JOB = {
    "metadata": meta("pi", created=600),
    "spec": {
        "completions": 1,
        "parallelism": 1,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
        "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}},
    },
    "status": {
        "startTime": ago(600),
        "completionTime": ago(555),
        "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ],
    },
}

CASES = [
    (
        "node-not-ready-cordoned-with-roles",
        ("", "v1", "nodes"),
        NODE_NOT_READY,
        [
            "cp-1",
            "NotReady,SchedulingDisabled",
            "control-plane,master,worker",
            "2d3h",
            "v1.32.0",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64",
            "timoner://0.1.0",
        ],
    ),
    (
        "node-ready",
        ("", "v1", "nodes"),
        {
            "metadata": {"name": "n", "creationTimestamp": ago(90)},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "ExternalIP", "address": "203.0.113.4"}],
            },
        },
        ["n", "Ready", "<none>", "90s", "", "<none>", "203.0.113.4", "<unknown>", "<unknown>", "<unknown>"],
    ),
    (
        "node-without-ready-condition",
        ("", "v1", "nodes"),
        {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "DiskPressure", "status": "False"}]}},
        [
            "n",
            "Unknown",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>",
        ],
    ),
    (
        "namespace",
        ("", "v1", "namespaces"),
        {"metadata": {"name": "team-a", "creationTimestamp": ago(8 * 86400)}, "status": {"phase": "Active"}},
        ["team-a", "Active", "8d"],
    ),
    (
        "deployment-partially-available",
        ("apps", "v1", "deployments"),
        DEPLOYMENT,
        [
            "web",
            "2/3",
            3,
            2,
            "3m20s",
            "web,log",
            "nginx:1.27,fluentbit",
            "app=web,!canary,tier in (backend,frontend)",
        ],
    ),
    (
        "deployment-invalid-selector",
        ("apps", "v1", "deployments"),
        {"metadata": meta("d"), "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Gt"}]}}},
        ["d", "0/0", 0, 0, "10m", "", "", "<invalid>"],
    ),
    (
        "replicaset",
        ("apps", "v1", "replicasets"),
        {
            "metadata": meta("web-5d8f"),
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}},
            },
            "status": {"replicas": 3, "readyReplicas": 1},
        },
        ["web-5d8f", 3, 3, 1, "10m", "web", "nginx", "app=web"],
    ),
    (
        "statefulset",
        ("apps", "v1", "statefulsets"),
        {
            "metadata": meta("db"),
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:17"}]}},
            },
            "status": {"readyReplicas": 2},
        },
        ["db", "2/3", "10m", "pg", "postgres:17"],
    ),
    (
        "daemonset",
        ("apps", "v1", "daemonsets"),
        {
            "metadata": meta("agent"),
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{"name": "a", "image": "agent:1"}],
                    }
                },
            },
            "status": {
                "desiredNumberScheduled": 3,
                "currentNumberScheduled": 3,
                "numberReady": 2,
                "updatedNumberScheduled": 3,
                "numberAvailable": 2,
            },
        },
        ["agent", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "10m", "a", "agent:1", "app=agent"],
    ),
    (
        "replicationcontroller",
        ("", "v1", "replicationcontrollers"),
        {
            "metadata": meta("rc"),
            "spec": {"replicas": 2, "selector": {"app": "rc"}},
            "status": {"replicas": 2, "readyReplicas": 2},
        },
        ["rc", 2, 2, 2, "10m", "", "", "app=rc"],
    ),
    (
        "job-completed-with-duration",
        ("batch", "v1", "jobs"),
        COMPLETED_JOB,
        ["pi", "Complete", "1/1", "45s", "10m", "pi", "perl:5.34", "batch.kubernetes.io/controller-uid=abc"],
    ),
    (
        "job-running-parallel",
        ("batch", "v1", "jobs"),
        {
            "metadata": meta("work"),
            "spec": {"parallelism": 3},
            "status": {"startTime": ago(150), "succeeded": 1},
        },
        ["work", "Running", "1/1 of 3", "2m30s", "10m", "", "", "<none>"],
    ),
    (
        "job-failed",
        ("batch", "v1", "jobs"),
        {
            "metadata": meta("bad"),
            "spec": {"completions": 2},
            "status": {
                "conditions": [{"type": "Complete", "status": "False"}, {"type": "Failed", "status": "True"}]
            },
        },
        ["bad", "Failed", "0/2", "", "10m", "", "", "<none>"],
    ),
    (
        "job-terminating-before-suspended",
        ("batch", "v1", "jobs"),
        {
            "metadata": meta("j", deletionTimestamp=ago(1)),
            "spec": {"completions": 1},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]},
        },
        ["j", "Terminating", "0/1", "", "10m", "", "", "<none>"],
    ),
    (
        "job-suspended",
        ("batch", "v1", "jobs"),
        {"metadata": meta("j"), "status": {"conditions": [{"type": "Suspended", "status": "True"}]}},
        ["j", "Suspended", "0/1", "", "10m", "", "", "<none>"],
    ),
    (
        "cronjob",
        ("batch", "v1", "cronjobs"),
        {
            "metadata": meta("backup"),
            "spec": {
                "schedule": "*/5 * * * *",
                "suspend": False,
                "jobTemplate": {
                    "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "restic"}]}}}
                },
            },
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(180)},
        },
        ["backup", "*/5 * * * *", "<none>", "False", 1, "3m", "10m", "b", "restic", "<none>"],
    ),
    (
        "cronjob-with-timezone",
        ("batch", "v1", "cronjobs"),
        {"metadata": meta("report"), "spec": {"schedule": "0 6 * * *", "timeZone": "Europe/Paris"}},
        ["report", "0 6 * * *", "Europe/Paris", "<unset>", 0, "<none>", "10m", "", "", "<none>"],
    ),
    (
        "service-node-port-two-ports",
        ("", "v1", "services"),
        NODE_PORT_SERVICE,
        [
            "web",
            "NodePort",
            "10.96.0.15",
            "<none>",
            "80:30080/TCP,443:30443/TCP",
            "5s",
            "app=web,tier=frontend",
        ],
    ),
    (
        "service-load-balancer-pending",
        ("", "v1", "services"),
        {
            "metadata": meta("lb"),
            "spec": {
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.0.20"],
                "ports": [{"port": 53, "protocol": "UDP"}],
            },
        },
        ["lb", "LoadBalancer", "10.96.0.20", "<pending>", "53/UDP", "10m", "<none>"],
    ),
    (
        "service-load-balancer-with-external-ips",
        ("", "v1", "services"),
        {
            "metadata": meta("lb"),
            "spec": {
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.0.21"],
                "externalIPs": ["198.51.100.7"],
                "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}],
            },
            "status": {
                "loadBalancer": {
                    "ingress": [
                        {"hostname": "lb.example.com"},
                        {"ip": "203.0.113.9", "hostname": "x"},
                        {"ip": "203.0.113.9"},
                    ]
                }
            },
        },
        [
            "lb",
            "LoadBalancer",
            "10.96.0.21",
            "203.0.113.9,lb.example.com,198.51.100.7",
            "443:31443/TCP",
            "10m",
            "<none>",
        ],
    ),
    (
        "service-external-name",
        ("", "v1", "services"),
        {"metadata": meta("db"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
        ["db", "ExternalName", "<none>", "db.example.com", "<none>", "10m", "<none>"],
    ),
    (
        "service-headless",
        ("", "v1", "services"),
        {
            "metadata": meta("h"),
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "None",
                "clusterIPs": ["None"],
                "externalIPs": ["1.2.3.4", "5.6.7.8"],
                "ports": [{"port": 80, "protocol": "TCP"}],
            },
        },
        ["h", "ClusterIP", "None", "1.2.3.4,5.6.7.8", "80/TCP", "10m", "<none>"],
    ),
    (
        "endpoints-more",
        ("", "v1", "endpoints"),
        {
            "metadata": meta("web"),
            "subsets": [
                {
                    "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                    "ports": [{"port": 8080}, {"port": 9090}],
                }
            ],
        },
        ["web", "10.0.0.1:8080,10.0.0.2:8080,10.0.0.1:9090 + 1 more...", "10m"],
    ),
    (
        "endpoints-ipv6-and-headless",
        ("", "v1", "endpoints"),
        {
            "metadata": meta("v6"),
            "subsets": [
                {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
                {"addresses": [{"ip": "10.0.0.9"}]},
            ],
        },
        ["v6", "[fd00::1]:80,10.0.0.9", "10m"],
    ),
    (
        "endpointslice",
        ("discovery.k8s.io", "v1", "endpointslices"),
        {
            "metadata": meta("web-abc"),
            "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 9000}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
        },
        ["web-abc", "IPv4", "80,metrics,* + 1 more...", "10.0.0.1,10.0.0.2", "10m"],
    ),
    (
        "configmap",
        ("", "v1", "configmaps"),
        {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
        ["cfg", 3, "10m"],
    ),
    (
        "secret",
        ("", "v1", "secrets"),
        {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}},
        ["tls", "kubernetes.io/tls", 2, "10m"],
    ),
    (
        "serviceaccount",
        ("", "v1", "serviceaccounts"),
        {"metadata": meta("default"), "secrets": [{"name": "default-token"}]},
        ["default", 1, "10m"],
    ),
    (
        "lease",
        ("coordination.k8s.io", "v1", "leases"),
        {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "host_1234"}},
        ["kube-scheduler", "host_1234", "10m"],
    ),
    (
        "event-core",
        ("", "v1", "events"),
        {
            "metadata": meta("web-1.17a8"),
            "type": "Warning",
            "reason": "BackOff",
            "count": 3,
            "message": "Back-off restarting failed container\n",
            "firstTimestamp": ago(600),
            "lastTimestamp": ago(120),
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "source": {"component": "kubelet", "host": "node-1"},
        },
        [
            "2m",
            "Warning",
            "BackOff",
            "pod/web-1",
            "spec.containers{web}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "10m",
            3,
            "web-1.17a8",
        ],
    ),
    (
        "event-core-series-from-new-api",
        ("", "v1", "events"),
        {
            "metadata": meta("e"),
            "type": "Normal",
            "reason": "Scheduled",
            "eventTime": "2026-11-26T11:55:00.123456Z",
            "series": {"count": 4, "lastObservedTime": "2026-11-26T11:59:40.000001Z"},
            "reportingComponent": "default-scheduler",
            "involvedObject": {"kind": "Node"},
            "message": "ok",
        },
        ["19s", "Normal", "Scheduled", "node", "", "default-scheduler", "ok", "4m59s", 4, "e"],
    ),
    (
        "event-events-k8s-io",
        ("events.k8s.io", "v1", "events"),
        {
            "metadata": meta("web.1"),
            "type": "Normal",
            "reason": "ScalingReplicaSet",
            "eventTime": ago(90),
            "regarding": {"kind": "Deployment", "name": "web"},
            "note": "Scaled up to 3",
            "reportingController": "deployment-controller",
            "reportingInstance": "cm-1",
        },
        [
            "90s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller, cm-1",
            "Scaled up to 3",
            "90s",
            1,
            "web.1",
        ],
    ),
    (
        "persistentvolume-bound",
        ("", "v1", "persistentvolumes"),
        {
            "metadata": {"name": "pv-1", "creationTimestamp": ago(600)},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": "default", "name": "data"},
                "storageClassName": "standard",
                "volumeMode": "Filesystem",
            },
            "status": {"phase": "Bound"},
        },
        [
            "pv-1",
            "10Gi",
            "RWO,RWX",
            "Retain",
            "Bound",
            "default/data",
            "standard",
            "<unset>",
            "",
            "10m",
            "Filesystem",
        ],
    ),
    (
        "persistentvolume-terminating",
        ("", "v1", "persistentvolumes"),
        {
            "metadata": {
                "name": "pv-2",
                "deletionTimestamp": ago(1),
                "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"},
            },
            "spec": {"storageClassName": "standard", "volumeAttributesClassName": "gold"},
            "status": {"phase": "Released", "reason": "x"},
        },
        ["pv-2", "0", "", "", "Terminating", "", "legacy", "gold", "x", "<unknown>", "<unset>"],
    ),
    (
        "pvc-pending",
        ("", "v1", "persistentvolumeclaims"),
        {
            "metadata": meta("data"),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}},
            },
            "status": {"phase": "Pending"},
        },
        ["data", "Pending", "", "", "", "standard", "<unset>", "10m", "<unset>"],
    ),
    (
        "pvc-bound",
        ("", "v1", "persistentvolumeclaims"),
        {
            "metadata": meta("data"),
            "spec": {"volumeName": "pv-1", "volumeMode": "Block"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOncePod"], "capacity": {"storage": "5Gi"}},
        },
        ["data", "Bound", "pv-1", "5Gi", "RWOP", "", "<unset>", "10m", "Block"],
    ),
    (
        "resourcequota",
        ("", "v1", "resourcequotas"),
        {
            "metadata": meta("compute"),
            "status": {
                "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "limits.cpu": "8"},
                "used": {"pods": "3", "requests.cpu": "500m"},
            },
        },
        ["compute", "10m", "pods: 3/10, requests.cpu: 500m/4", "limits.cpu: 0/8, limits.memory: 0/8Gi"],
    ),
    (
        "ingress",
        ("networking.k8s.io", "v1", "ingresses"),
        {
            "metadata": meta("web"),
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["a.com"]}],
                "rules": [{"host": "a.com"}, {}, {"host": "b.com"}, {"host": "c.com"}, {"host": "d.com"}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}},
        },
        ["web", "nginx", "a.com,b.com,c.com + 2 more...", "203.0.113.5", "80, 443", "10m"],
    ),
    (
        "ingressclass",
        ("networking.k8s.io", "v1", "ingressclasses"),
        {
            "metadata": meta("nginx"),
            "spec": {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"},
            },
        },
        ["nginx", "k8s.io/ingress-nginx", "Params.k8s.example.com/p", "10m"],
    ),
    (
        "networkpolicy",
        ("networking.k8s.io", "v1", "networkpolicies"),
        {
            "metadata": meta("deny"),
            "spec": {"podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]}},
        },
        ["deny", "role", "10m"],
    ),
    (
        "storageclass-default",
        ("storage.k8s.io", "v1", "storageclasses"),
        {
            "metadata": {
                "name": "standard",
                "creationTimestamp": ago(600),
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": True,
        },
        ["standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", True, "10m"],
    ),
    (
        "priorityclass",
        ("scheduling.k8s.io", "v1", "priorityclasses"),
        {
            "metadata": {"name": "system-node-critical", "creationTimestamp": ago(600)},
            "value": 2000001000,
            "globalDefault": False,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        ["system-node-critical", 2000001000, False, "10m", "PreemptLowerPriority"],
    ),
    (
        "runtimeclass",
        ("node.k8s.io", "v1", "runtimeclasses"),
        {"metadata": {"name": "gvisor", "creationTimestamp": ago(600)}, "handler": "runsc"},
        ["gvisor", "runsc", "10m"],
    ),
    (
        "rolebinding",
        ("rbac.authorization.k8s.io", "v1", "rolebindings"),
        {
            "metadata": meta("devs"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "namespace": "ci", "name": "builder"},
                {"kind": "User", "name": "bob"},
            ],
        },
        ["devs", "ClusterRole/edit", "10m", "alice, bob", "devs", "ci/builder"],
    ),
    (
        "clusterrolebinding",
        ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
        {
            "metadata": {"name": "admins"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "system:masters"}],
        },
        ["admins", "ClusterRole/cluster-admin", "<unknown>", "", "system:masters", ""],
    ),
    (
        "controllerrevision",
        ("apps", "v1", "controllerrevisions"),
        {
            "metadata": meta(
                "web-7c9",
                ownerReferences=[
                    {"apiVersion": "v1", "kind": "Pod", "name": "not-the-controller"},
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": True},
                ],
            ),
            "revision": 2,
        },
        ["web-7c9", "statefulset.apps/web", 2, "10m"],
    ),
    (
        "hpa-v2-three-metrics",
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        {
            "metadata": meta("web"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    },
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "packets"},
                            "target": {"type": "AverageValue", "averageValue": "1k"},
                        },
                    },
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "memory",
                            "target": {"type": "AverageValue", "averageValue": "100Mi"},
                        },
                    },
                ],
            },
            "status": {
                "currentReplicas": 3,
                "currentMetrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "current": {"averageUtilization": 30, "averageValue": "150m"},
                        },
                    },
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": "packets"}, "current": {"averageValue": "500"}},
                    },
                ],
            },
        },
        ["web", "Deployment/web", "cpu: 30%/50%, 500/1k + 1 more...", "1", 10, 3, "10m"],
    ),
    (
        "hpa-v2-external-and-object",
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        {
            "metadata": meta("q"),
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "worker"},
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {"name": "queue"},
                            "target": {"type": "AverageValue", "averageValue": "30"},
                        },
                    },
                    {
                        "type": "Object",
                        "object": {"metric": {"name": "rps"}, "target": {"type": "Value", "value": "10k"}},
                    },
                ],
            },
            "status": {
                "currentMetrics": [{"type": "External", "external": {"current": {"averageValue": "12"}}}]
            },
        },
        ["q", "Deployment/worker", "12/30 (avg), <unknown>/10k", "<unset>", 5, 0, "10m"],
    ),
    (
        "hpa-v1-cpu-target",
        ("autoscaling", "v1", "horizontalpodautoscalers"),
        {
            "metadata": meta("web"),
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 4,
                "targetCPUUtilizationPercentage": 80,
            },
            "status": {"currentReplicas": 2, "currentCPUUtilizationPercentage": 12},
        },
        ["web", "Deployment/web", "cpu: 12%/80%", "2", 4, 2, "10m"],
    ),
    (
        "hpa-v2-unknown-utilization",
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        {
            "metadata": meta("web"),
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "maxReplicas": 4,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}
                ],
            },
        },
        ["web", "Deployment/web", "cpu: <unknown>/<auto>", "<unset>", 4, 0, "10m"],
    ),
    (
        "pdb",
        ("policy", "v1", "poddisruptionbudgets"),
        {"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}},
        ["web", "50%", "N/A", 1, "10m"],
    ),
    (
        "pdb-max-unavailable-int",
        ("policy", "v1", "poddisruptionbudgets"),
        {"metadata": meta("db"), "spec": {"maxUnavailable": 1}},
        ["db", "N/A", "1", 0, "10m"],
    ),
    (
        "podtemplate",
        ("", "v1", "podtemplates"),
        {
            "metadata": meta("tpl"),
            "template": {
                "metadata": {"labels": {"b": "2", "a": "1"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
        ["tpl", "c", "busybox", "a=1,b=2"],
    ),
    (
        "role-uses-default-convertor",
        ("rbac.authorization.k8s.io", "v1", "roles"),
        {"metadata": {"name": "reader", "creationTimestamp": "2026-11-26T13:00:00+02:00"}},
        ["reader", "2026-11-26T11:00:00Z"],
    ),
    (
        "limitrange-uses-default-convertor",
        ("", "v1", "limitranges"),
        {"metadata": {"name": "limits"}},
        ["limits", "0001-01-01T00:00:00Z"],
    ),
]


@pytest.mark.parametrize(("key", "obj", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cells(key: tuple[str, str, str], obj: dict, expected: list) -> None:
    resource = info(*key)
    cells = row_cells(resource, obj, now=NOW)
    assert cells == expected
    assert len(cells) == len(column_definitions(resource))


# --- column definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "columns"),
    [
        (
            ("", "v1", "pods"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1),
            ],
        ),
        (
            ("", "v1", "nodes"),
            [
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1),
            ],
        ),
        (
            ("apps", "v1", "deployments"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            ("", "v1", "services"),
            [
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1),
            ],
        ),
        (
            ("batch", "v1", "jobs"),
            [
                ("Name", 0),
                ("Status", 0),
                ("Completions", 0),
                ("Duration", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            ("", "v1", "events"),
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ],
        ),
        (("", "v1", "configmaps"), [("Name", 0), ("Data", 0), ("Age", 0)]),
        # The one upstream printer with Age before its other columns.
        (("", "v1", "resourcequotas"), [("Name", 0), ("Age", 0), ("Request", 0), ("Limit", 0)]),
        (("rbac.authorization.k8s.io", "v1", "clusterroles"), [("Name", 0), ("Created At", 0)]),
    ],
)
def test_column_names_and_priorities(key: tuple[str, str, str], columns: list[tuple[str, int]]) -> None:
    definitions = column_definitions(info(*key))
    assert [(c["name"], c["priority"]) for c in definitions] == columns
    assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in definitions)


@pytest.mark.parametrize(
    ("key", "column", "type_", "format_", "description_start"),
    [
        (("", "v1", "pods"), "Name", "string", "name", "Name must be unique within a namespace."),
        (("", "v1", "pods"), "Age", "string", "", "CreationTimestamp is a timestamp"),
        (("", "v1", "pods"), "IP", "string", "", "podIP address allocated to the pod."),
        (("", "v1", "pods"), "Restarts", "string", "", "The number of times the containers in this pod"),
        (("apps", "v1", "replicasets"), "Desired", "integer", "", "Replicas is the number of desired"),
        (("batch", "v1", "cronjobs"), "Suspend", "boolean", "", "This flag tells the controller to suspend"),
        (("", "v1", "events"), "Name", "string", "name", "Name must be unique"),
        (("", "v1", "limitranges"), "Created At", "date", "", "CreationTimestamp is a timestamp"),
    ],
)
def test_column_details(key, column, type_, format_, description_start) -> None:
    definition = next(c for c in column_definitions(info(*key)) if c["name"] == column)
    assert definition["type"] == type_
    assert definition["format"] == format_
    assert definition["description"].startswith(description_start)


# --- the Table envelope -----------------------------------------------------------------------------

SUCCEEDED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "job-x", "namespace": "batch", "labels": {"app": "x"}, "creationTimestamp": ago(60)},
    "spec": {"containers": [{"name": "c"}]},
    "status": {"phase": "Succeeded"},
}


@pytest.mark.parametrize(
    ("kwargs", "metadata"),
    [
        ({}, {}),
        ({"resource_version": "42"}, {"resourceVersion": "42"}),
        (
            {"resource_version": "42", "continue_token": "abc", "remaining": 0},
            {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 0},
        ),
        ({"remaining": 7}, {"remainingItemCount": 7}),
    ],
)
def test_table_metadata(kwargs: dict, metadata: dict) -> None:
    table = to_table(info("", "v1", "pods"), [], now=NOW, **kwargs)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == metadata
    assert table["rows"] == []
    assert [c["name"] for c in table["columnDefinitions"]][:2] == ["Name", "Ready"]


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (
            "Metadata",
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": SUCCEEDED_POD["metadata"],
            },
        ),
        ("Object", SUCCEEDED_POD),
        ("None", None),
    ],
)
def test_row_object(include: str, expected: dict | None) -> None:
    table = to_table(info("", "v1", "pods"), [SUCCEEDED_POD], now=NOW, include_object=include)
    (row,) = table["rows"]
    assert row.get("object") == expected
    assert row["cells"][:5] == ["job-x", "0/1", "Succeeded", "0", "60s"]
    assert row["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]


def test_rows_keep_input_order_and_running_pods_have_no_conditions() -> None:
    pods = [pod(status={"phase": "Running"}), SUCCEEDED_POD]
    table = to_table(info("", "v1", "pods"), pods, now=NOW)
    assert [r["cells"][0] for r in table["rows"]] == ["web-1", "job-x"]
    assert "conditions" not in table["rows"][0]


def test_invalid_include_object() -> None:
    with pytest.raises(ValueError, match="includeObject"):
        to_table(info("", "v1", "pods"), [], now=NOW, include_object="Everything")


def test_custom_resource_uses_default_convertor() -> None:
    widget = ResourceInfo(
        group="example.com", version="v1", kind="Widget", plural="widgets", singular="widget", namespaced=True
    )
    table = to_table(
        widget, [{"metadata": {"name": "w", "creationTimestamp": "2026-01-02T03:04:05Z"}}], now=NOW
    )
    assert [(c["name"], c["type"], c["format"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", "name"),
        ("Created At", "date", ""),
    ]
    assert table["rows"][0]["cells"] == ["w", "2026-01-02T03:04:05Z"]


def test_naive_now_is_utc() -> None:
    obj = {"metadata": {"name": "cm", "creationTimestamp": ago(200)}}
    cells = row_cells(info("", "v1", "configmaps"), obj, now=NOW.replace(tzinfo=None))
    assert cells == ["cm", 0, "3m20s"]


# --- robustness: every built-in resource prints a minimal or malformed object -----------------------

MALFORMED = {
    "metadata": {"name": "x", "labels": "oops", "creationTimestamp": "not-a-time", "deletionTimestamp": 5},
    "spec": {
        "containers": "nope",
        "ports": [None, 3],
        "selector": [],
        "template": None,
        "rules": [1],
        "metrics": [None, {"type": "Pods"}],
        "replicas": "3",
        "capacity": [],
    },
    "status": {
        "conditions": [None, "Ready"],
        "containerStatuses": [None, {"state": []}],
        "initContainerStatuses": [{"state": {"terminated": None}}],
        "hard": {"pods": None},
        "addresses": None,
        "podIPs": [None],
    },
    "subsets": [None, {"addresses": [None]}],
    "subjects": [None],
    "roleRef": None,
}


@pytest.mark.parametrize("resource", BUILTIN, ids=lambda r: f"{r.group or 'core'}/{r.version}/{r.plural}")
@pytest.mark.parametrize(
    "obj", [{}, {"metadata": {"name": "x"}}, MALFORMED], ids=["empty", "name-only", "malformed"]
)
def test_every_builtin_prints_minimal_objects(resource: ResourceInfo, obj: dict) -> None:
    table = to_table(resource, [obj], now=NOW, include_object="Object")
    columns = table["columnDefinitions"]
    (row,) = table["rows"]
    assert len(row["cells"]) == len(columns)
    assert all(isinstance(cell, str | int | bool) for cell in row["cells"])
    name_index = next(i for i, c in enumerate(columns) if c["format"] == "name")
    assert row["cells"][name_index] == ("x" if obj else "")
