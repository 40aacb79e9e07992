"""Every built-in kind through the real kubectl, with the manifests users and Helm charts really write.

For each kind that supports create: `kubectl apply` (client-side, strict validation), a re-apply that
reports `unchanged`, `kubectl get -o wide` with upstream's column headers (printers.go, v1.32), a
round trip of every field the manifest set through `kubectl get -o yaml`, `kubectl describe`, and
`kubectl delete`. Then the everyday imperative commands: `create <subcommand>`, `expose`, `set`,
`rollout`, `label`/`annotate --overwrite`, `taint`/`cordon`, `diff`, server dry runs, `wait`,
`get all`, `auth`, `--sort-by` and go-templates.

Cluster-scoped names carry a per-test suffix and namespaced objects live in a per-test namespace,
so the cases run against one shared server in any order and in parallel.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from timoner.testing import KUBECTL, kubectl

# --- helpers ------------------------------------------------------------------------------------------


def k(server, *args, **kw) -> subprocess.CompletedProcess:
    return kubectl(server.kubeconfig, *args, **kw)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def ns(shared_ns):
    return shared_ns


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:6]


def header_of(table: str) -> list[str]:
    """The column names of kubectl's table output; names may hold single spaces (`LAST SEEN`)."""
    return re.split(r"\s{2,}", table.splitlines()[0].strip())


def assert_subset(expected: Any, actual: Any, path: str = "") -> None:
    """Every field of `expected` is in `actual` with the same value; lists match item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing from the server's object"
            assert_subset(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(expected) == len(actual), f"{path}: {len(expected)} items sent, {len(actual)} returned"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(want, got, f"{path}[{i}]")
    else:
        assert expected == actual, f"{path}: sent {expected!r}, got {actual!r}"


def wait_until(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- the manifests ------------------------------------------------------------------------------------
# `__NS__` is the test's namespace and `__U__` a per-test suffix for cluster-scoped names.

POD_SPEC = """
      serviceAccountName: default
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        fsGroup: 2000
        seccompProfile: {type: RuntimeDefault}
      initContainers:
      - name: init-perms
        image: busybox:1.36
        command: [sh, -c, "chown -R 1000:2000 /data"]
        volumeMounts:
        - {name: data, mountPath: /data}
      containers:
      - name: web
        image: nginx:1.25
        imagePullPolicy: IfNotPresent
        args: ["--port=8080"]
        ports:
        - {name: http, containerPort: 8080, protocol: TCP}
        env:
        - {name: LOG_LEVEL, value: info}
        - name: POD_NAME
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        - name: POD_IP
          valueFrom:
            fieldRef: {fieldPath: status.podIP}
        - name: MEMORY_LIMIT
          valueFrom:
            resourceFieldRef: {containerName: web, resource: limits.memory}
        - name: GREETING
          valueFrom:
            configMapKeyRef: {name: app-config, key: greeting, optional: true}
        - name: DB_PASSWORD
          valueFrom:
            secretKeyRef: {name: db, key: password}
        envFrom:
        - configMapRef: {name: app-config}
        - prefix: SECRET_
          secretRef: {name: app-secrets, optional: true}
        resources:
          requests: {cpu: 100m, memory: 128Mi}
          limits: {cpu: 500m, memory: 256Mi}
        livenessProbe:
          httpGet: {path: /healthz, port: http}
          initialDelaySeconds: 10
          periodSeconds: 10
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 5
        startupProbe:
          exec:
            command: [cat, /tmp/healthy]
          failureThreshold: 30
          periodSeconds: 10
        lifecycle:
          preStop:
            exec:
              command: [sh, -c, "sleep 5"]
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: cache, mountPath: /cache}
        - {name: config, mountPath: /etc/app, readOnly: true}
        - {name: secret, mountPath: /etc/secret, readOnly: true}
        - {name: token, mountPath: /var/run/secrets/tokens}
        - {name: podinfo, mountPath: /etc/podinfo}
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
      - {key: dedicated, operator: Equal, value: web, effect: NoSchedule}
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels: {app.kubernetes.io/name: web}
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels: {app.kubernetes.io/name: web}
      volumes:
      - name: data
        emptyDir: {}
      - name: cache
        emptyDir: {medium: Memory, sizeLimit: 64Mi}
      - name: config
        configMap:
          name: app-config
          defaultMode: 420
          items:
          - {key: greeting, path: greeting.txt}
      - name: secret
        secret: {secretName: db, optional: true}
      - name: token
        projected:
          sources:
          - serviceAccountToken: {path: token, expirationSeconds: 3600, audience: vault}
          - configMap:
              name: app-config
              items:
              - {key: greeting, path: greeting}
      - name: podinfo
        downwardAPI:
          items:
          - path: labels
            fieldRef: {apiVersion: v1, fieldPath: metadata.labels}  # `items` is atomic: spell the default
"""


def _indent(text: str, by: int) -> str:
    """Re-indent POD_SPEC (written at six spaces) for where it is used."""
    return "\n".join((" " * by + line[6:]) if line.strip() else line for line in text.strip("\n").splitlines())


def pod_spec(indent: int) -> str:
    return _indent(POD_SPEC, indent)


SIMPLE_CONTAINERS = """
      containers:
      - name: worker
        image: busybox:1.36
        command: [sh, -c, "echo working && sleep 30"]
        resources:
          requests: {cpu: 50m, memory: 32Mi}
"""


def simple_spec(indent: int) -> str:
    return _indent(SIMPLE_CONTAINERS, indent)


TLS_CRT = b64("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
TLS_KEY = b64("-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n")
DOCKER_CONFIG = b64(json.dumps(
    {"auths": {"registry.example.com": {"username": "ci", "password": "s3cret", "auth": b64("ci:s3cret")}}}))


@dataclass
class Case:
    id: str
    manifest: str
    resource: str  # what `kubectl get` is given, qualified where the short name is ambiguous
    name: str
    header: list[str]  # `kubectl get -o wide` columns, as upstream's printers name them
    namespaced: bool = True
    # Fields the server rewrites on purpose (dotted paths left out of the round-trip check) and what
    # it stores instead.
    not_stored: tuple[str, ...] = ()
    stored: dict = field(default_factory=dict)
    # What a second identical `kubectl apply` reports: `configured` where upstream's kubectl computes a
    # non-empty three-way patch every time (explained at each such case).
    reapply: str = "unchanged"
    row: tuple[str, ...] = ()  # strings that must appear in the object's row


POD_HEADER = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
WORKLOAD_WIDE = ["CONTAINERS", "IMAGES", "SELECTOR"]
EVENT_HEADER = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT",
                "NAME"]
DEFAULT_HEADER = ["NAME", "CREATED AT"]

CASES = [
    Case(
        "namespace",
        """
apiVersion: v1
kind: Namespace
metadata:
  name: team-a-__U__
  labels:
    pod-security.kubernetes.io/enforce: baseline
    pod-security.kubernetes.io/warn: restricted
    team: a
  annotations:
    scheduler.alpha.kubernetes.io/node-selector: "env=prod"
""",
        "namespaces", "team-a-__U__", ["NAME", "STATUS", "AGE"], namespaced=False, row=("Active",),
    ),
    Case(
        "pod",
        f"""
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app.kubernetes.io/name: web
    app.kubernetes.io/instance: demo
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "8080"
spec:
{pod_spec(2)}
  automountServiceAccountToken: false
""",
        # The DefaultTolerationSeconds admission adds two tolerations, and `tolerations` is an atomic
        # list, so kubectl's three-way patch re-sends ours every time: upstream says `configured` too.
        # Automount is off, so the ServiceAccount admission adds no kube-api-access volume and mounts.
        "pods", "web", POD_HEADER, row=("0/1", "Pending"), reapply="configured",
        not_stored=("spec.tolerations",),
        stored={"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
        ]}},
    ),
    Case(
        "service-clusterip",
        """
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app.kubernetes.io/name: web}
  annotations:
    prometheus.io/scrape: "true"
spec:
  type: ClusterIP
  selector: {app.kubernetes.io/name: web, app.kubernetes.io/instance: demo}
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP: {timeoutSeconds: 10800}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP, appProtocol: http}
  - {name: metrics, port: 9090, targetPort: 9090, protocol: TCP}
""",
        "services", "web", ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        row=("ClusterIP", "80/TCP,9090/TCP"),
    ),
    Case(
        "service-nodeport",
        """
apiVersion: v1
kind: Service
metadata:
  name: web-public
  labels: {app.kubernetes.io/name: web}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app.kubernetes.io/name: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: https, port: 443, targetPort: 8443, protocol: TCP}
""",
        "services", "web-public", ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        row=("NodePort",),
    ),
    Case(
        "service-headless",
        """
apiVersion: v1
kind: Service
metadata:
  name: db-headless
  labels: {app.kubernetes.io/name: db}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app.kubernetes.io/name: db}
  ports:
  - {name: postgres, port: 5432, targetPort: postgres}
""",
        "services", "db-headless", ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        row=("ClusterIP", "None", "5432/TCP"),
    ),
    Case(
        "service-externalname",
        """
apiVersion: v1
kind: Service
metadata:
  name: external-db
spec:
  type: ExternalName
  externalName: db.example.com
""",
        "services", "external-db", ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        row=("ExternalName", "db.example.com"),
    ),
    Case(
        "endpoints",
        """
apiVersion: v1
kind: Endpoints
metadata:
  name: legacy-db
  labels: {app: legacy-db}
subsets:
- addresses:
  - {ip: 10.0.0.10}
  - {ip: 10.0.0.11, hostname: db-1}
  notReadyAddresses:
  - {ip: 10.0.0.12}
  ports:
  - {name: postgres, port: 5432, protocol: TCP}
""",
        "endpoints", "legacy-db", ["NAME", "ENDPOINTS", "AGE"], row=("10.0.0.10:5432,10.0.0.11:5432",),
    ),
    Case(
        "configmap",
        """
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app.kubernetes.io/name: web, app.kubernetes.io/managed-by: Helm}
  annotations:
    meta.helm.sh/release-name: demo
    meta.helm.sh/release-namespace: __NS__
data:
  greeting: hello
  app.properties: |
    log.level=info
    feature.x=true
binaryData:
  logo.png: iVBORw0KGgo=
immutable: false
""",
        "configmaps", "app-config", ["NAME", "DATA", "AGE"], row=("3",),
    ),
    Case(
        "secret-opaque",
        f"""
apiVersion: v1
kind: Secret
metadata:
  name: db
  labels: {{app.kubernetes.io/name: db}}
type: Opaque
data:
  username: {b64("postgres")}
stringData:
  password: correct-horse-battery-staple
  config.yaml: |
    host: db.example.com
    port: 5432
""",
        "secrets", "db", ["NAME", "TYPE", "DATA", "AGE"],
        # `stringData` is folded into `data`, so it is never in the live object and kubectl's
        # three-way patch re-sends it every time: upstream says `configured` too.
        not_stored=("stringData",),
        stored={"data": {"username": b64("postgres"), "password": b64("correct-horse-battery-staple"),
                         "config.yaml": b64("host: db.example.com\nport: 5432\n")}},
        reapply="configured", row=("Opaque", "3"),
    ),
    Case(
        "secret-tls",
        f"""
apiVersion: v1
kind: Secret
metadata:
  name: web-tls
  annotations:
    cert-manager.io/issuer-name: letsencrypt
type: kubernetes.io/tls
data:
  tls.crt: {TLS_CRT}
  tls.key: {TLS_KEY}
""",
        "secrets", "web-tls", ["NAME", "TYPE", "DATA", "AGE"], row=("kubernetes.io/tls", "2"),
    ),
    Case(
        "secret-dockerconfigjson",
        f"""
apiVersion: v1
kind: Secret
metadata:
  name: regcred
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {DOCKER_CONFIG}
""",
        "secrets", "regcred", ["NAME", "TYPE", "DATA", "AGE"], row=("kubernetes.io/dockerconfigjson", "1"),
    ),
    Case(
        "serviceaccount",
        """
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  labels: {app.kubernetes.io/name: web}
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/app
automountServiceAccountToken: false
imagePullSecrets:
- name: regcred
""",
        "serviceaccounts", "app", ["NAME", "SECRETS", "AGE"],
    ),
    Case(
        "event-core",
        """
apiVersion: v1
kind: Event
metadata:
  name: web.17a8c1f0e2b3c4d5
involvedObject:
  apiVersion: apps/v1
  kind: Deployment
  name: web
  namespace: __NS__
  uid: 0b6c6a1e-3d36-4b4a-9d0f-5e0c2f6b9a11
  resourceVersion: "12345"
reason: ScalingReplicaSet
message: Scaled up replica set web-7d4b9c to 3
type: Normal
source:
  component: deployment-controller
firstTimestamp: "2024-05-01T10:00:00Z"
lastTimestamp: "2024-05-01T10:05:00Z"
count: 3
reportingComponent: deployment-controller
reportingInstance: ""
""",
        "events", "web.17a8c1f0e2b3c4d5", EVENT_HEADER, row=("ScalingReplicaSet", "deployment/web"),
    ),
    Case(
        "node",
        """
apiVersion: v1
kind: Node
metadata:
  name: worker-__U__
  labels:
    kubernetes.io/hostname: worker-__U__
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/worker: ""
    topology.kubernetes.io/zone: zone-a
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  providerID: kind://docker/kind/worker-__U__
  taints:
  - {key: dedicated, value: gpu, effect: NoSchedule}
""",
        "nodes", "worker-__U__",
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
         "CONTAINER-RUNTIME"],
        namespaced=False, row=("worker",),
    ),
    Case(
        "limitrange",
        """
apiVersion: v1
kind: LimitRange
metadata:
  name: defaults
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 512Mi}
    defaultRequest: {cpu: 100m, memory: 128Mi}
    max: {cpu: "2", memory: 2Gi}
    min: {cpu: 50m, memory: 64Mi}
    maxLimitRequestRatio: {cpu: "10"}
  - type: PersistentVolumeClaim
    max: {storage: 10Gi}
    min: {storage: 1Gi}
""",
        "limitranges", "defaults", DEFAULT_HEADER,
    ),
    Case(
        "resourcequota",
        """
apiVersion: v1
kind: ResourceQuota
metadata:
  name: compute
spec:
  hard:
    requests.cpu: "4"
    requests.memory: 8Gi
    limits.cpu: "8"
    limits.memory: 16Gi
    pods: "20"
    persistentvolumeclaims: "5"
    count/deployments.apps: "10"
""",
        "resourcequotas", "compute", ["NAME", "AGE", "REQUEST", "LIMIT"],
    ),
    Case(
        "persistentvolume",
        """
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-__U__
  labels: {type: local}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  volumeMode: Filesystem
  hostPath: {path: /mnt/data, type: DirectoryOrCreate}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [worker-1]}
""",
        "persistentvolumes", "pv-__U__",
        ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS",
         "VOLUMEATTRIBUTESCLASS", "REASON", "AGE", "VOLUMEMODE"],
        namespaced=False, row=("10Gi", "RWO", "Retain", "manual", "Filesystem"),
    ),
    Case(
        "persistentvolumeclaim",
        """
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  labels: {app.kubernetes.io/name: db}
  annotations:
    helm.sh/resource-policy: keep
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  volumeMode: Filesystem
  resources:
    requests: {storage: 5Gi}
  selector:
    matchLabels: {type: local}
""",
        "persistentvolumeclaims", "data",
        ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE",
         "VOLUMEMODE"],
        row=("manual", "Filesystem"),
    ),
    Case(
        "replicationcontroller",
        f"""
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 2
  minReadySeconds: 5
  selector: {{app: legacy}}
  template:
    metadata:
      labels: {{app: legacy}}
    spec:
{simple_spec(6)}
""",
        "replicationcontrollers", "legacy", ["NAME", "DESIRED", "CURRENT", "READY", "AGE", *WORKLOAD_WIDE],
        row=("busybox:1.36", "app=legacy"),
    ),
    Case(
        "podtemplate",
        f"""
apiVersion: v1
kind: PodTemplate
metadata:
  name: batch-worker
template:
  metadata:
    labels: {{app: batch-worker}}
  spec:
    restartPolicy: Never
{simple_spec(4)}
""",
        "podtemplates", "batch-worker", ["NAME", "CONTAINERS", "IMAGES", "POD LABELS"],
        row=("worker", "busybox:1.36", "app=batch-worker"),
    ),
    Case(
        "deployment",
        f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app.kubernetes.io/name: web
    app.kubernetes.io/instance: demo
    helm.sh/chart: web-1.2.3
  annotations:
    meta.helm.sh/release-name: demo
spec:
  replicas: 3
  revisionHistoryLimit: 5
  progressDeadlineSeconds: 600
  minReadySeconds: 10
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 25%, maxUnavailable: 0}}
  selector:
    matchLabels:
      app.kubernetes.io/name: web
      app.kubernetes.io/instance: demo
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
        app.kubernetes.io/instance: demo
      annotations:
        checksum/config: 3f2a9c0d1e
    spec:
{pod_spec(6)}
""",
        "deployments.apps", "web", ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", *WORKLOAD_WIDE],
        row=("0/3", "nginx:1.25", "app.kubernetes.io/instance=demo,app.kubernetes.io/name=web"),
    ),
    Case(
        "replicaset",
        f"""
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
  labels: {{tier: frontend}}
spec:
  replicas: 2
  minReadySeconds: 5
  selector:
    matchLabels: {{tier: frontend}}
    matchExpressions:
    - {{key: environment, operator: In, values: [prod, staging]}}
  template:
    metadata:
      labels: {{tier: frontend, environment: prod}}
    spec:
{simple_spec(6)}
""",
        "replicasets.apps", "frontend", ["NAME", "DESIRED", "CURRENT", "READY", "AGE", *WORKLOAD_WIDE],
        row=("2", "busybox:1.36"),
    ),
    Case(
        "statefulset",
        """
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  labels: {app.kubernetes.io/name: db}
spec:
  serviceName: db-headless
  replicas: 3
  podManagementPolicy: Parallel
  revisionHistoryLimit: 10
  minReadySeconds: 10
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {partition: 0, maxUnavailable: 1}
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Delete
    whenScaled: Retain
  selector:
    matchLabels: {app.kubernetes.io/name: db}
  template:
    metadata:
      labels: {app.kubernetes.io/name: db}
    spec:
      terminationGracePeriodSeconds: 60
      containers:
      - name: postgres
        image: postgres:16
        ports:
        - {name: postgres, containerPort: 5432}
        env:
        - name: PGDATA
          value: /var/lib/postgresql/data/pgdata
        - name: POSTGRES_PASSWORD
          valueFrom:
            secretKeyRef: {name: db, key: password}
        readinessProbe:
          exec:
            command: [pg_isready, -U, postgres]
          periodSeconds: 10
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
  volumeClaimTemplates:
  - metadata:
      name: data
      labels: {app.kubernetes.io/name: db}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: standard
      resources:
        requests: {storage: 10Gi}
""",
        # volumeClaimTemplates is an atomic list and the server defaults each template (volumeMode,
        # status.phase: Pending), so kubectl re-sends the list every time: upstream says `configured` too.
        "statefulsets.apps", "db", ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"],
        row=("0/3", "postgres:16"), reapply="configured",
        stored={"spec": {"volumeClaimTemplates": [
            {"spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}]}},
    ),
    Case(
        "daemonset",
        """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-exporter
  labels: {app.kubernetes.io/name: node-exporter}
spec:
  revisionHistoryLimit: 10
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1, maxSurge: 0}
  selector:
    matchLabels: {app.kubernetes.io/name: node-exporter}
  template:
    metadata:
      labels: {app.kubernetes.io/name: node-exporter}
    spec:
      hostNetwork: true
      hostPID: true
      dnsPolicy: ClusterFirstWithHostNet
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
      - {operator: Exists}
      containers:
      - name: node-exporter
        image: quay.io/prometheus/node-exporter:v1.8.1
        args: [--path.rootfs=/host]
        ports:
        - {name: metrics, containerPort: 9100, hostPort: 9100, protocol: TCP}
        resources:
          limits: {memory: 180Mi}
          requests: {cpu: 10m, memory: 64Mi}
        volumeMounts:
        - {name: root, mountPath: /host, readOnly: true, mountPropagation: HostToContainer}
      volumes:
      - name: root
        hostPath: {path: /}
""",
        "daemonsets.apps", "node-exporter",
        ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE", *WORKLOAD_WIDE],
        row=("kubernetes.io/os=linux", "node-exporter:v1.8.1"),
    ),
    Case(
        "controllerrevision",
        """
apiVersion: apps/v1
kind: ControllerRevision
metadata:
  name: db-7c5ddbdf54
  labels: {app.kubernetes.io/name: db, controller.kubernetes.io/hash: 7c5ddbdf54}
data:
  spec:
    template:
      $patch: replace
      metadata:
        labels: {app.kubernetes.io/name: db}
      spec:
        containers:
        - {name: postgres, image: postgres:16}
revision: 3
""",
        "controllerrevisions.apps", "db-7c5ddbdf54", ["NAME", "CONTROLLER", "REVISION", "AGE"], row=("3",),
    ),
    Case(
        "job",
        """
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  labels: {app.kubernetes.io/name: web, app.kubernetes.io/component: migration}
  annotations:
    helm.sh/hook: pre-upgrade
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  completions: 3
  parallelism: 2
  backoffLimit: 4
  activeDeadlineSeconds: 600
  ttlSecondsAfterFinished: 3600
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {containerName: migrate, operator: In, values: [42]}
    - action: Ignore
      onPodConditions:
      - {type: DisruptionTarget, status: "True"}  # `rules` is atomic: spell the default
  template:
    metadata:
      labels: {app.kubernetes.io/component: migration}
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: migrate/migrate:v4.17.0
        args: [-path, /migrations, -database, postgres://db:5432/app, up]
""",
        "jobs.batch", "migrate",
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", *WORKLOAD_WIDE], row=("0/3", "migrate/migrate"),
    ),
    Case(
        "job-indexed",
        """
apiVersion: batch/v1
kind: Job
metadata:
  name: shards
spec:
  completionMode: Indexed
  completions: 5
  parallelism: 5
  backoffLimitPerIndex: 1
  maxFailedIndexes: 2
  template:
    spec:
      restartPolicy: Never
      subdomain: shards
      containers:
      - name: shard
        image: busybox:1.36
        command: [sh, -c, "echo shard $JOB_COMPLETION_INDEX"]
""",
        "jobs.batch", "shards", ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", *WORKLOAD_WIDE],
        row=("0/5",),
    ),
    Case(
        "cronjob",
        """
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly-backup
  labels: {app.kubernetes.io/name: backup}
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 200
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 1
  suspend: false
  jobTemplate:
    metadata:
      labels: {app.kubernetes.io/name: backup}
    spec:
      backoffLimit: 2
      ttlSecondsAfterFinished: 86400
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: backup
            image: postgres:16
            command: [sh, -c, "pg_dump -h db app > /backup/app.sql"]
            volumeMounts:
            - {name: backup, mountPath: /backup}
          volumes:
          - name: backup
            persistentVolumeClaim: {claimName: backups}
""",
        "cronjobs.batch", "nightly-backup",
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE", *WORKLOAD_WIDE],
        row=("30 2 * * *", "Europe/Berlin", "False", "<none>"),
    ),
    Case(
        "lease",
        """
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: my-operator-lock
spec:
  holderIdentity: my-operator-6d5f7c9b8-x2x7k_8c1e
  leaseDurationSeconds: 15
  acquireTime: "2024-05-01T10:00:00.000000Z"
  renewTime: "2024-05-01T10:00:10.000000Z"
  leaseTransitions: 2
""",
        "leases.coordination.k8s.io", "my-operator-lock", ["NAME", "HOLDER", "AGE"],
        row=("my-operator-6d5f7c9b8-x2x7k_8c1e",),
    ),
    Case(
        "endpointslice",
        """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  labels:
    kubernetes.io/service-name: web
    endpointslice.kubernetes.io/managed-by: my-controller.example.com
addressType: IPv4
ports:
- {name: http, protocol: TCP, port: 8080, appProtocol: http}
endpoints:
- addresses: [10.1.2.3]
  conditions: {ready: true, serving: true, terminating: false}
  hostname: web-0
  nodeName: worker-1
  zone: zone-a
  targetRef: {kind: Pod, name: web-0, namespace: __NS__}
- addresses: [10.1.2.4]
  conditions: {ready: false}
""",
        "endpointslices.discovery.k8s.io", "web-abc12", ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        row=("IPv4", "8080", "10.1.2.3,10.1.2.4"),
    ),
    Case(
        "event-events-k8s-io",
        """
apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: web-0.17a8c1f0e2b3c4d6
eventTime: "2024-05-01T10:00:00.000000Z"
reportingController: example.com/my-operator
reportingInstance: my-operator-6d5f7c9b8-x2x7k
action: Reconcile
reason: Synced
note: Reconciled successfully
type: Normal
regarding:
  apiVersion: v1
  kind: Pod
  name: web-0
  namespace: __NS__
""",
        "events.events.k8s.io", "web-0.17a8c1f0e2b3c4d6", EVENT_HEADER, row=("Synced", "pod/web-0"),
    ),
    Case(
        "poddisruptionbudget",
        """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels: {app.kubernetes.io/name: web}
""",
        "poddisruptionbudgets.policy", "web",
        # `selector` has patch strategy `replace`, which kubectl's diff never compares: it re-sends the
        # selector on every apply, so upstream says `configured` too.
        ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"], row=("1", "N/A", "0"),
        reapply="configured",
    ),
    Case(
        "hpa-v2",
        """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 70}
  - type: Resource
    resource:
      name: memory
      target: {type: AverageValue, averageValue: 500Mi}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
      - {type: Percent, value: 50, periodSeconds: 60}
    scaleUp:
      selectPolicy: Max
      policies:
      - {type: Pods, value: 4, periodSeconds: 15}
""",
        "horizontalpodautoscalers.v2.autoscaling", "web",
        ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], row=("Deployment/web", "2", "10"),
    ),
    Case(
        "hpa-v1",
        """
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: api
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  minReplicas: 1
  maxReplicas: 5
  targetCPUUtilizationPercentage: 80
""",
        "horizontalpodautoscalers.v1.autoscaling", "api",
        ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], row=("Deployment/api", "80%"),
    ),
    Case(
        "ingress",
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
    cert-manager.io/cluster-issuer: letsencrypt
spec:
  ingressClassName: nginx
  tls:
  - hosts: [app.example.com]
    secretName: web-tls
  defaultBackend:
    service:
      name: default-http-backend
      port: {number: 80}
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port: {number: 80}
      - path: /api
        pathType: ImplementationSpecific
        backend:
          service:
            name: api
            port: {name: http}
""",
        "ingresses.networking.k8s.io", "web", ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        row=("nginx", "app.example.com", "80, 443"),
    ),
    Case(
        "ingressclass",
        """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx-__U__
  annotations:
    ingressclass.kubernetes.io/is-default-class: "false"
spec:
  controller: k8s.io/ingress-nginx
  parameters:
    apiGroup: k8s.example.com
    kind: IngressParameters
    name: external-lb
""",
        "ingressclasses.networking.k8s.io", "nginx-__U__", ["NAME", "CONTROLLER", "PARAMETERS", "AGE"],
        namespaced=False, row=("k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/external-lb"),
    ),
    Case(
        "networkpolicy",
        """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: web}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: ingress-nginx}
      podSelector:
        matchLabels: {app.kubernetes.io/name: ingress-nginx}
    - ipBlock:
        cidr: 172.17.0.0/16
        except: [172.17.1.0/24]
    ports:
    - {protocol: TCP, port: 8080}
  egress:
  - to:
    - namespaceSelector: {}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
    ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
  - ports:
    - {protocol: TCP, port: 32000, endPort: 32768}
""",
        "networkpolicies.networking.k8s.io", "web-allow", ["NAME", "POD-SELECTOR", "AGE"],
        row=("app.kubernetes.io/name=web",),
    ),
    Case(
        "storageclass",
        """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: gp3-__U__
  annotations:
    storageclass.kubernetes.io/is-default-class: "false"
provisioner: ebs.csi.aws.com
parameters:
  type: gp3
  csi.storage.k8s.io/fstype: ext4
  encrypted: "true"
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
mountOptions: [debug]
allowedTopologies:
- matchLabelExpressions:
  - key: topology.ebs.csi.aws.com/zone
    values: [us-east-1a, us-east-1b]
""",
        "storageclasses.storage.k8s.io", "gp3-__U__",
        ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"],
        namespaced=False, row=("ebs.csi.aws.com", "Delete", "WaitForFirstConsumer", "true"),
    ),
    Case(
        "priorityclass",
        """
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high-__U__
value: 1000000
globalDefault: false
preemptionPolicy: PreemptLowerPriority
description: For latency-critical services.
""",
        "priorityclasses.scheduling.k8s.io", "high-__U__",
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        namespaced=False, row=("1000000", "false", "PreemptLowerPriority"),
        # A plain Go bool with omitempty: upstream drops `false` rather than storing it.
        not_stored=("globalDefault",),
    ),
    Case(
        "runtimeclass",
        """
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: gvisor-__U__
handler: runsc
overhead:
  podFixed: {cpu: 250m, memory: 120Mi}
scheduling:
  nodeSelector: {runtime: gvisor}
  tolerations:
  - {key: runtime, operator: Equal, value: gvisor, effect: NoSchedule}
""",
        "runtimeclasses.node.k8s.io", "gvisor-__U__", ["NAME", "HANDLER", "AGE"], namespaced=False,
        row=("runsc",),
    ),
    Case(
        "role",
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  labels: {app.kubernetes.io/name: web}
rules:
- apiGroups: [""]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments]
  resourceNames: [web]
  verbs: [get, patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: ["*"]
""",
        "roles.rbac.authorization.k8s.io", "pod-reader", DEFAULT_HEADER,
    ),
    Case(
        "rolebinding",
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: pod-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
subjects:
- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: "system:serviceaccounts:ci", apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: app, namespace: __NS__}
""",
        "rolebindings.rbac.authorization.k8s.io", "pod-reader",
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        row=("Role/pod-reader", "jane", "system:serviceaccounts:ci", "__NS__/app"),
    ),
    Case(
        "clusterrole",
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: metrics-reader-__U__
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
- nonResourceURLs: [/metrics, /healthz/*]
  verbs: [get]
""",
        "clusterroles.rbac.authorization.k8s.io", "metrics-reader-__U__", DEFAULT_HEADER, namespaced=False,
    ),
    Case(
        "clusterrolebinding",
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: metrics-reader-__U__
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
- {kind: ServiceAccount, name: prometheus, namespace: monitoring}
- {kind: Group, name: "system:authenticated", apiGroup: rbac.authorization.k8s.io}
""",
        "clusterrolebindings.rbac.authorization.k8s.io", "metrics-reader-__U__",
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        namespaced=False, row=("ClusterRole/view", "system:authenticated", "monitoring/prometheus"),
    ),
    Case(
        "customresourcedefinition",
        """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups__U__.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: backups__U__, singular: backup__U__, kind: Backup__U__, shortNames: [bk__U__]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              schedule: {type: string}
              retain: {type: integer, minimum: 1, default: 7}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Schedule, type: string, jsonPath: .spec.schedule}
""",
        "customresourcedefinitions.apiextensions.k8s.io", "backups__U__.example.com", DEFAULT_HEADER,
        namespaced=False,
    ),
    Case(
        "mutatingwebhookconfiguration",
        """
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: sidecar-injector-__U__
webhooks:
- name: inject.sidecar-__U__.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  clientConfig:
    url: https://127.0.0.1:9/mutate
  rules:
  - {apiGroups: [example.com], apiVersions: [v1], operations: [CREATE], resources: [gadgets__U__]}
  objectSelector:
    matchLabels: {inject-__U__: "true"}
""",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io", "sidecar-injector-__U__",
        ["NAME", "WEBHOOKS", "AGE"], namespaced=False, row=("1",),
        # `rules` is an atomic list and the server defaults `scope: "*"` into its items, so kubectl's
        # three-way patch resends the list on every apply, as against upstream.
        reapply="configured",
    ),
    Case(
        "validatingwebhookconfiguration",
        """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: policy-__U__
webhooks:
- name: deny.policy-__U__.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig:
    service: {namespace: __NS__, name: policy, path: /validate}
  rules:
  - {apiGroups: [example.com], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [gadgets__U__]}
- name: audit.policy-__U__.example.com
  admissionReviewVersions: [v1]
  sideEffects: NoneOnDryRun
  failurePolicy: Ignore
  clientConfig:
    service: {namespace: __NS__, name: policy, path: /audit}
  rules:
  - {apiGroups: [example.com], apiVersions: ["*"], operations: [DELETE], resources: [gadgets__U__]}
""",
        "validatingwebhookconfigurations.admissionregistration.k8s.io", "policy-__U__",
        ["NAME", "WEBHOOKS", "AGE"], namespaced=False, row=("2",),
        reapply="configured",  # as for the mutating configuration: defaulted `scope` in atomic `rules`
    ),
    Case(
        "validatingadmissionpolicy",
        """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit-__U__
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: "object.spec.replicas <= 5"
    message: at most 5 replicas
""",
        "validatingadmissionpolicies.admissionregistration.k8s.io", "replica-limit-__U__",
        ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"], namespaced=False, row=("1", "v1/ConfigMap"),
    ),
    Case(
        "validatingadmissionpolicybinding",
        """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit-__U__
spec:
  policyName: replica-limit-__U__
  validationActions: [Deny]
  paramRef: {name: limits, namespace: __NS__, parameterNotFoundAction: Deny}
""",
        "validatingadmissionpolicybindings.admissionregistration.k8s.io", "replica-limit-__U__",
        ["NAME", "POLICYNAME", "PARAMREF", "AGE"], namespaced=False, row=("replica-limit-__U__", "__NS__/limits"),
    ),
]


def test_every_creatable_builtin_kind_has_a_case():
    from timoner.api.registry import BUILTIN

    covered = set()
    for case in CASES:
        doc = yaml.safe_load(case.manifest)
        covered.add((doc["apiVersion"], doc["kind"]))
    creatable = {(r.group_version, r.kind) for r in BUILTIN if set(r.verbs) != {"create"}}
    assert creatable <= covered, f"kinds without a case: {sorted(creatable - covered)}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kind_lifecycle(shared_server, ns, suffix, case: Case):
    def fill(text: str) -> str:
        return text.replace("__NS__", ns).replace("__U__", suffix)

    manifest, name = fill(case.manifest), fill(case.name)
    scope = ["-n", ns] if case.namespaced else []
    doc = yaml.safe_load(manifest)

    applied = k(shared_server, "apply", *scope, "-f", "-", input=manifest).stdout
    assert re.search(rf"/{re.escape(name)} created$", applied.strip()), applied
    again = k(shared_server, "apply", *scope, "-f", "-", input=manifest).stdout
    assert again.strip().endswith(f"/{name} {case.reapply}"), again

    wide = k(shared_server, "get", case.resource, name, *scope, "-o", "wide").stdout
    assert header_of(wide) == case.header
    rows = wide.splitlines()[1:]
    assert len(rows) == 1 and name in rows[0], wide
    for expected in case.row:
        assert fill(expected) in rows[0], f"{expected!r} not in row {rows[0]!r}"

    live = yaml.safe_load(k(shared_server, "get", case.resource, name, *scope, "-o", "yaml").stdout)
    for path in case.not_stored:
        *parents, last = path.split(".")
        holder = doc
        for key in parents:
            holder = holder[key]
        del holder[last]
    assert_subset(doc, live)
    assert_subset(case.stored, live)
    assert live["metadata"]["uid"] and live["metadata"]["resourceVersion"]
    if case.namespaced:
        assert live["metadata"]["namespace"] == ns
    else:
        assert "namespace" not in live["metadata"]

    described = k(shared_server, "describe", case.resource, name, *scope).stdout
    assert re.search(rf"^Name:\s+{re.escape(name)}$", described, re.M), described

    deleted = k(shared_server, "delete", case.resource, name, *scope, "--wait=true", "--timeout=60s").stdout
    assert f"/{name} deleted" in deleted or f'"{name}" deleted' in deleted, deleted
    gone = k(shared_server, "get", case.resource, name, *scope, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


# --- everyday commands beyond apply ---------------------------------------------------------------------

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - {containerPort: 8080}
      - name: sidecar
        image: envoyproxy/envoy:v1.30.1
"""


def get_json(server, *args) -> dict:
    return json.loads(k(server, "get", *args, "-o", "json").stdout)


def test_get_all_lists_every_kind_in_the_all_category(shared_server, ns):
    manifests = [case for case in CASES if case.id in (
        "pod", "service-clusterip", "replicationcontroller", "deployment", "replicaset", "statefulset",
        "daemonset", "job", "cronjob", "hpa-v2", "configmap")]
    for case in manifests:
        k(shared_server, "apply", "-n", ns, "-f", "-", input=case.manifest.replace("__NS__", ns))
    out = k(shared_server, "get", "all", "-n", ns).stdout
    for expected in ("pod/web", "service/web", "replicationcontroller/legacy", "deployment.apps/web",
                     "replicaset.apps/frontend", "statefulset.apps/db", "daemonset.apps/node-exporter",
                     "job.batch/migrate", "cronjob.batch/nightly-backup", "horizontalpodautoscaler.autoscaling/web"):
        assert re.search(rf"^{re.escape(expected)}\s", out, re.M), f"{expected} missing from:\n{out}"
    assert "configmap" not in out  # not in the `all` category
    names = k(shared_server, "get", "all", "-n", ns, "-o", "name").stdout.split()
    assert len(names) == 10


def test_auth_can_i_list_and_whoami(shared_server, ns):
    listing = k(shared_server, "auth", "can-i", "--list", "-n", ns).stdout
    assert header_of(listing) == ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"]
    rows = [re.split(r"\s{2,}", line.rstrip()) for line in listing.splitlines()[1:]]
    assert ["*.*", "[]", "[]", "[*]"] in rows
    assert ["", "[*]", "[]", "[*]"] in rows
    assert k(shared_server, "auth", "can-i", "delete", "deployments.apps", "-n", ns).stdout.strip() == "yes"
    assert k(shared_server, "auth", "can-i", "get", "/healthz").stdout.strip() == "yes"
    whoami = k(shared_server, "auth", "whoami").stdout
    assert header_of(whoami) == ["ATTRIBUTE", "VALUE"]
    assert re.search(r"^Username\s+\S", whoami, re.M)
    as_json = json.loads(k(shared_server, "auth", "whoami", "-o", "json").stdout)
    assert as_json["kind"] == "SelfSubjectReview"
    assert as_json["status"]["userInfo"]["username"]


@pytest.fixture
def tls_files(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("app.example.com")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_create_deployment(shared_server, ns):
    out = k(shared_server, "create", "deployment", "api", "-n", ns, "--image=nginx:1.25", "--replicas=3",
            "--port=8080").stdout
    assert out.strip() == "deployment.apps/api created"
    dep = get_json(shared_server, "deployment", "api", "-n", ns)
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "api"}}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert (container["name"], container["image"]) == ("nginx", "nginx:1.25")
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_create_job_and_cronjob_and_job_from_cronjob(shared_server, ns):
    k(shared_server, "create", "job", "once", "-n", ns, "--image=busybox:1.36", "--", "echo", "hi")
    job = get_json(shared_server, "job", "once", "-n", ns)
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["command"] == ["echo", "hi"]
    assert pod_spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 6 and job["spec"]["completions"] == 1  # server defaults
    assert "batch.kubernetes.io/controller-uid" in job["spec"]["selector"]["matchLabels"]

    k(shared_server, "create", "cronjob", "nightly", "-n", ns, "--image=busybox:1.36", "--schedule=0 3 * * *",
      "--restart=OnFailure", "--", "date")
    cron = get_json(shared_server, "cronjob", "nightly", "-n", ns)
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Allow"  # server default
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"

    k(shared_server, "create", "job", "manual", "-n", ns, "--from=cronjob/nightly")
    manual = get_json(shared_server, "job", "manual", "-n", ns)
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = manual["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronJob", "nightly", cron["metadata"]["uid"])
    assert manual["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]


def test_create_secret_tls(shared_server, ns, tls_files):
    cert_path, key_path = tls_files
    k(shared_server, "create", "secret", "tls", "web-tls", "-n", ns, f"--cert={cert_path}", f"--key={key_path}")
    secret = get_json(shared_server, "secret", "web-tls", "-n", ns)
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.crt"]) == cert_path.read_bytes()
    assert base64.b64decode(secret["data"]["tls.key"]) == key_path.read_bytes()
    described = k(shared_server, "describe", "secret", "web-tls", "-n", ns).stdout
    assert re.search(r"^Type:\s+kubernetes.io/tls$", described, re.M)
    assert re.search(rf"^tls.crt:\s+{len(cert_path.read_bytes())} bytes$", described, re.M)


def test_create_role_and_clusterrolebinding(shared_server, ns, suffix):
    k(shared_server, "create", "role", "pod-reader", "-n", ns, "--verb=get,list,watch",
      "--resource=pods,deployments.apps", "--resource-name=web")
    role = get_json(shared_server, "role", "pod-reader", "-n", ns)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"],
         "verbs": ["get", "list", "watch"]},
    ]
    name = f"viewers-{suffix}"
    k(shared_server, "create", "clusterrolebinding", name, "--clusterrole=view", "--user=alice", "--group=devs",
      f"--serviceaccount={ns}:ci")
    try:
        crb = get_json(shared_server, "clusterrolebinding", name)
        assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
        assert crb["subjects"] == [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": ns},
        ]
        wide = k(shared_server, "get", "clusterrolebinding", name, "-o", "wide").stdout
        assert re.split(r"\s{2,}", wide.splitlines()[1].strip()) [:2] == [name, "ClusterRole/view"]
    finally:
        k(shared_server, "delete", "clusterrolebinding", name)


def test_create_quota_and_pdb(shared_server, ns):
    k(shared_server, "create", "quota", "compute", "-n", ns, "--hard=cpu=1,memory=1Gi,pods=10",
      "--scopes=NotBestEffort")
    quota = get_json(shared_server, "resourcequota", "compute", "-n", ns)
    assert quota["spec"] == {"hard": {"cpu": "1", "memory": "1Gi", "pods": "10"}, "scopes": ["NotBestEffort"]}
    k(shared_server, "create", "pdb", "web", "-n", ns, "--selector=app=web", "--min-available=50%")
    pdb = get_json(shared_server, "pdb", "web", "-n", ns)
    assert pdb["spec"]["minAvailable"] == "50%"
    assert pdb["spec"]["selector"] == {"matchLabels": {"app": "web"}}


def test_create_priorityclass(shared_server, suffix):
    name = f"batch-{suffix}"
    k(shared_server, "create", "priorityclass", name, "--value=1000", "--description=batch jobs",
      "--preemption-policy=Never")
    try:
        pc = get_json(shared_server, "priorityclass", name)
        assert (pc["value"], pc["description"], pc["preemptionPolicy"]) == (1000, "batch jobs", "Never")
        assert "globalDefault" not in pc  # a plain bool with omitempty: false is not written
    finally:
        k(shared_server, "delete", "priorityclass", name)


def test_create_ingress(shared_server, ns):
    k(shared_server, "create", "ingress", "simple", "-n", ns, "--class=nginx",
      "--rule=foo.com/bar*=svc1:8080,tls=my-cert", "--rule=/=default-svc:http",
      "--annotation=nginx.ingress.kubernetes.io/ssl-redirect=true")
    ing = get_json(shared_server, "ingress", "simple", "-n", ns)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["foo.com"], "secretName": "my-cert"}]
    rules = ing["spec"]["rules"]
    assert rules[0]["host"] == "foo.com"
    assert rules[0]["http"]["paths"] == [{"path": "/bar", "pathType": "Prefix", "backend": {
        "service": {"name": "svc1", "port": {"number": 8080}}}}]
    assert rules[1]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "http"}
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"


def test_create_service_nodeport(shared_server, ns):
    k(shared_server, "create", "service", "nodeport", "web-np", "-n", ns, "--tcp=80:8080")
    svc = get_json(shared_server, "service", "web-np", "-n", ns)
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == {"app": "web-np"}
    port = svc["spec"]["ports"][0]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, 8080, "TCP")
    assert 30000 <= port["nodePort"] <= 32767
    row = k(shared_server, "get", "service", "web-np", "-n", ns).stdout.splitlines()[1]
    assert f"80:{port['nodePort']}/TCP" in row


def test_expose_deployment(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    out = k(shared_server, "expose", "deployment", "web", "-n", ns, "--port=80", "--target-port=8080",
            "--name=web-svc").stdout
    assert out.strip() == "service/web-svc exposed"
    svc = get_json(shared_server, "service", "web-svc", "-n", ns)
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["clusterIP"]


def test_set_image_env_resources(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    k(shared_server, "create", "configmap", "settings", "-n", ns, "--from-literal=MODE=fast")
    k(shared_server, "set", "image", "deployment/web", "-n", ns, "web=nginx:1.27", "sidecar=envoyproxy/envoy:v1.31.0")
    k(shared_server, "set", "env", "deployment/web", "-n", ns, "-c", "web", "LOG_LEVEL=debug", "REGION=eu")
    k(shared_server, "set", "env", "deployment/web", "-n", ns, "-c", "web", "--from=configmap/settings")
    k(shared_server, "set", "resources", "deployment", "web", "-n", ns, "-c", "web",
      "--limits=cpu=200m,memory=512Mi", "--requests=cpu=100m,memory=256Mi")
    dep = get_json(shared_server, "deployment", "web", "-n", ns)
    web, sidecar = dep["spec"]["template"]["spec"]["containers"]
    assert (web["image"], sidecar["image"]) == ("nginx:1.27", "envoyproxy/envoy:v1.31.0")
    assert web["env"] == [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "REGION", "value": "eu"},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
    ]
    assert "env" not in sidecar and sidecar["resources"] == {}  # `-c web` left the sidecar alone
    assert web["resources"] == {"limits": {"cpu": "200m", "memory": "512Mi"},
                                "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert dep["metadata"]["generation"] == 5
    k(shared_server, "set", "env", "deployment/web", "-n", ns, "-c", "web", "REGION-")
    dep = get_json(shared_server, "deployment", "web", "-n", ns)
    assert [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]] == ["LOG_LEVEL", "MODE"]


def test_rollout_pause_resume_restart_history(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    assert k(shared_server, "rollout", "pause", "deployment/web", "-n", ns).stdout.strip() == \
        "deployment.apps/web paused"
    assert get_json(shared_server, "deployment", "web", "-n", ns)["spec"]["paused"] is True
    again = k(shared_server, "rollout", "pause", "deployment/web", "-n", ns, check=False)
    assert again.returncode != 0 and "already paused" in again.stderr
    assert k(shared_server, "rollout", "resume", "deployment/web", "-n", ns).stdout.strip() == \
        "deployment.apps/web resumed"
    assert not get_json(shared_server, "deployment", "web", "-n", ns)["spec"].get("paused")
    k(shared_server, "rollout", "restart", "deployment/web", "-n", ns)
    dep = get_json(shared_server, "deployment", "web", "-n", ns)
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]

    # No controller runs yet, so stand in for one: a ReplicaSet the Deployment owns, at revision 1.
    template = dep["spec"]["template"]
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": "web-5d9c7b", "labels": {"app": "web", "pod-template-hash": "5d9c7b"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": dep["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d9c7b"}},
                 "template": {**template, "metadata": {**template["metadata"],
                                                       "labels": {"app": "web", "pod-template-hash": "5d9c7b"}}}},
    }
    k(shared_server, "create", "-n", ns, "-f", "-", input=json.dumps(rs))
    history = k(shared_server, "rollout", "history", "deployment/web", "-n", ns).stdout
    assert history.splitlines()[0].strip() == "deployment.apps/web"
    assert header_of("\n".join(history.splitlines()[1:])) == ["REVISION", "CHANGE-CAUSE"]
    assert re.search(r"^1\s+<none>$", history, re.M), history
    detail = k(shared_server, "rollout", "history", "deployment/web", "-n", ns, "--revision=1").stdout
    assert "nginx:1.25" in detail and "pod-template-hash=5d9c7b" in detail


def test_label_and_annotate_overwrite(shared_server, ns):
    k(shared_server, "create", "configmap", "cm", "-n", ns, "--from-literal=a=1")
    k(shared_server, "label", "configmap", "cm", "-n", ns, "env=dev")
    refused = k(shared_server, "label", "configmap", "cm", "-n", ns, "env=prod", check=False)
    assert refused.returncode != 0 and "already has a value (dev)" in refused.stderr
    k(shared_server, "label", "configmap", "cm", "-n", ns, "env=prod", "--overwrite")
    k(shared_server, "annotate", "configmap", "cm", "-n", ns, "owner=team-a")
    refused = k(shared_server, "annotate", "configmap", "cm", "-n", ns, "owner=team-b", check=False)
    assert refused.returncode != 0 and "already has a value (team-a)" in refused.stderr
    k(shared_server, "annotate", "configmap", "cm", "-n", ns, "owner=team-b", "--overwrite")
    meta = get_json(shared_server, "configmap", "cm", "-n", ns)["metadata"]
    assert meta["labels"] == {"env": "prod"}
    assert meta["annotations"] == {"owner": "team-b"}
    k(shared_server, "annotate", "configmap", "cm", "-n", ns, "owner-")
    assert "annotations" not in get_json(shared_server, "configmap", "cm", "-n", ns)["metadata"]


def test_taint_cordon_uncordon_node(shared_server, suffix):
    name = f"node-{suffix}"
    k(shared_server, "apply", "-f", "-", input=f"""
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}}}
""")
    try:
        out = k(shared_server, "taint", "nodes", name, "dedicated=gpu:NoSchedule").stdout
        assert out.strip() == f"node/{name} tainted"
        k(shared_server, "taint", "nodes", name, "maintenance:NoExecute")
        taints = {t["key"]: t for t in get_json(shared_server, "node", name)["spec"]["taints"]}
        assert taints["dedicated"] == {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
        assert taints["maintenance"]["effect"] == "NoExecute"
        k(shared_server, "taint", "nodes", name, "dedicated:NoSchedule-")
        assert [t["key"] for t in get_json(shared_server, "node", name)["spec"]["taints"]] == ["maintenance"]

        assert k(shared_server, "cordon", name).stdout.strip() == f"node/{name} cordoned"
        assert get_json(shared_server, "node", name)["spec"]["unschedulable"] is True
        row = k(shared_server, "get", "node", name).stdout.splitlines()[1]
        assert "SchedulingDisabled" in row
        assert k(shared_server, "uncordon", name).stdout.strip() == f"node/{name} uncordoned"
        assert not get_json(shared_server, "node", name)["spec"].get("unschedulable")
    finally:
        k(shared_server, "delete", "node", name)


def test_diff_against_server_dry_run(shared_server, ns):
    manifest = DEPLOYMENT
    same = k(shared_server, "diff", "-n", ns, "-f", "-", input=manifest, check=False)
    assert same.returncode == 1  # not there yet: all of it is new
    assert "+  name: web" in same.stdout
    k(shared_server, "apply", "-n", ns, "-f", "-", input=manifest)
    same = k(shared_server, "diff", "-n", ns, "-f", "-", input=manifest, check=False)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    changed = k(shared_server, "diff", "-n", ns, "-f", "-", check=False,
                input=manifest.replace("replicas: 2", "replicas: 4").replace("nginx:1.25", "nginx:1.27"))
    assert changed.returncode == 1, changed.stderr
    diff_lines = changed.stdout.splitlines()
    assert "-  replicas: 2" in diff_lines and "+  replicas: 4" in diff_lines
    assert "-      - image: nginx:1.25" in diff_lines and "+      - image: nginx:1.27" in diff_lines
    assert "-  generation: 1" in diff_lines and "+  generation: 2" in diff_lines
    # A dry run leaves the object alone.
    dep = get_json(shared_server, "deployment", "web", "-n", ns)
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["generation"] == 1


def test_apply_dry_run_server(shared_server, ns):
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\ndata:\n  a: '1'\n"
    out = k(shared_server, "apply", "-n", ns, "--dry-run=server", "-f", "-", input=cm).stdout
    assert out.strip() == "configmap/dry created (server dry run)"
    assert k(shared_server, "get", "configmap", "dry", "-n", ns, check=False).returncode != 0
    k(shared_server, "apply", "-n", ns, "-f", "-", input=cm)
    before = get_json(shared_server, "configmap", "dry", "-n", ns)
    out = k(shared_server, "apply", "-n", ns, "--dry-run=server", "-f", "-", input=cm.replace("'1'", "'2'")).stdout
    assert out.strip() == "configmap/dry configured (server dry run)"
    shown = yaml.safe_load(k(shared_server, "apply", "-n", ns, "--dry-run=server", "-o", "yaml", "-f", "-",
                             input=cm.replace("'1'", "'3'")).stdout)
    assert shown["data"] == {"a": "3"}
    after = get_json(shared_server, "configmap", "dry", "-n", ns)
    assert after["data"] == {"a": "1"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    invalid = k(shared_server, "apply", "-n", ns, "--dry-run=server", "-f", "-", check=False,
                input=cm.replace("name: dry", "name: Not_Valid"))
    assert invalid.returncode != 0 and "Invalid value" in invalid.stderr


def _wait_in_background(server, *args) -> tuple[subprocess.Popen, list[str]]:
    """`kubectl wait` running on its own; returns once it is watching (so it must see the change happen)."""
    env = {"KUBECONFIG": str(server.kubeconfig), "HOME": str(server.kubeconfig.parent), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([KUBECTL, "wait", "-v=6", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    try:
        wait_until(lambda: any("watch=true" in line for line in list(log)) or proc.poll() is not None,
                   what="kubectl wait to start watching")
    except AssertionError:
        proc.kill()
        raise
    assert proc.poll() is None, f"kubectl wait ended before the change: {''.join(log)}"
    return proc, log


def _finish(proc: subprocess.Popen, log: list[str]) -> str:
    try:
        out = proc.stdout.read()
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(log)
    return out


def test_wait_for_jsonpath_and_condition(shared_server, ns):
    k(shared_server, "create", "configmap", "flag", "-n", ns, "--from-literal=ready=no")
    waiter, log = _wait_in_background(shared_server, "configmap/flag", "-n", ns,
                                      "--for=jsonpath={.data.ready}=yes", "--timeout=30s")
    k(shared_server, "patch", "configmap", "flag", "-n", ns, "-p", '{"data":{"ready":"yes"}}')
    assert _finish(waiter, log).strip() == "configmap/flag condition met"

    k(shared_server, "apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    waiter, log = _wait_in_background(shared_server, "deployment/web", "-n", ns, "--for=condition=Available",
                                      "--timeout=30s")
    status = {"status": {"observedGeneration": 1, "conditions": [{
        "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
        "lastTransitionTime": "2024-05-01T10:00:00Z", "lastUpdateTime": "2024-05-01T10:00:00Z"}]}}
    k(shared_server, "patch", "deployment", "web", "-n", ns, "--subresource=status", "--type=merge",
      "-p", json.dumps(status))
    assert _finish(waiter, log).strip() == "deployment.apps/web condition met"

    timed_out = k(shared_server, "wait", "configmap/flag", "-n", ns, "--for=jsonpath={.data.ready}=never",
                  "--timeout=1s", check=False)
    assert timed_out.returncode != 0 and "timed out" in timed_out.stderr


def test_get_sort_by_and_go_template(shared_server, ns):
    for name, replicas in (("b", 3), ("c", 1), ("a", 2)):
        k(shared_server, "create", "deployment", name, "-n", ns, "--image=nginx:1.25", f"--replicas={replicas}")
    by_replicas = k(shared_server, "get", "deployments", "-n", ns, "--sort-by=.spec.replicas", "-o", "name").stdout
    assert by_replicas.split() == ["deployment.apps/c", "deployment.apps/a", "deployment.apps/b"]
    table = k(shared_server, "get", "deployments", "-n", ns, "--sort-by={.metadata.name}").stdout
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["a", "b", "c"]
    templated = k(shared_server, "get", "deployments", "-n", ns, "-o",
                  "go-template={{range .items}}{{.metadata.name}}={{.spec.replicas}};{{end}}").stdout
    assert templated == "a=2;b=3;c=1;"
    one = k(shared_server, "get", "deployment", "b", "-n", ns, "-o",
            "go-template={{(index .spec.template.spec.containers 0).image}}").stdout
    assert one == "nginx:1.25"
