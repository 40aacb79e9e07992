"""`bench/extensibility.py` still runs: CRD to served, custom vs built-in creates, a mutating webhook's cost.

Only that the benchmark works is checked, never how fast: the figures depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPT = BENCH / "extensibility.py"
sys.path.insert(0, str(BENCH))
from _procs import alive  # noqa: E402  (the benchmarks' own check: a zombie is not alive)


def test_extensibility_benchmark_runs(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--duration", "1", "--crds", "3", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == []

    crd = result["crd"]
    # Two rounds of 3 CRDs: round A times Established, round B discovery; both time the list.
    assert crd["crds"] == 6 and [r["round"] for r in crd["per_crd"]] == ["A"] * 3 + ["B"] * 3
    for row in crd["per_crd"]:
        # Each is timed from the POST's start, so none precedes the POST's return.
        other = row["established_ms"] if row["round"] == "A" else row["discovery_ms"]
        assert 0 < row["create_ms"] <= min(row["served_ms"], other)
        assert row["served_tries"] >= 1 and row["served_after_return_ms"] >= 0
    for key in ("served_ms", "served_after_return_ms", "established_ms", "discovery_ms"):
        assert crd[key]["p50"] <= crd[key]["p99"] <= crd[key]["max"]

    creates = result["creates"]
    for c in (1, 32):
        for what in ("configmaps", "custom", "custom, no CEL"):
            r = creates["wrk"][f"{what} c{c}"]
            assert r["requests"] > 0 and r["connections"] == c and sum(r["errors"].values()) == 0
        assert creates[f"custom_vs_builtin_c{c}"] > 0 and creates[f"custom_vs_nocel_c{c}"] > 0

    hook = result["webhook"]  # webhooks are served: the phase ran, every hooked create was reviewed
    assert "skipped" not in hook
    assert hook["hooked_creates"] > 0 and hook["reviews_answered"] >= hook["hooked_creates"]
    assert 1 <= hook["webhook_connections"] <= hook["reviews_answered"]
    assert hook["webhook_per_s_c1"] > 0 and hook["webhook_per_s_c32"] > 0
    assert {"webhook_added_p50_ms_c1", "webhook_added_p50_ms_c32"} <= set(hook)

    assert set(result["goals"]) == {"crd_served_after_return_p99_ms", "custom_vs_builtin_c32",
                                    "webhook_added_p50_ms_c1"}
    assert all(g["met"] in ("yes", "NO") for g in result["goals"].values())
    # No process the benchmark started outlives it.
    assert not alive(result["pids"]["server"]) and not alive(hook["webhook_server_pid"])
    for text in ("CRD POST return -> list 200, p99", "custom / ConfigMap, 32 clients",
                 "webhook adds, p50 / p99, 1 client"):
        assert text in run.stdout
