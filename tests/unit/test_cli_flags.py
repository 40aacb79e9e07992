"""`timoner` command-line flags that map to upstream's: the agent's `--max-pods`, the manager's `--metrics-port`."""

from __future__ import annotations

import pytest

from timoner.cli.main import _parser


def test_agent_max_pods_defaults_to_kubelets_110_and_takes_a_value():
    assert _parser().parse_args(["agent", "--kubeconfig", "k"]).max_pods == 110
    assert _parser().parse_args(["agent", "--kubeconfig", "k", "--max-pods", "1010"]).max_pods == 1010


def test_agent_max_pods_refuses_a_negative_count(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["agent", "--kubeconfig", "k", "--max-pods", "-1"])
    assert "--max-pods" in capsys.readouterr().err


def test_controllers_metrics_are_off_unless_a_port_is_given():
    assert _parser().parse_args(["controllers", "--kubeconfig", "k"]).metrics_port == 0
    assert _parser().parse_args(["controllers", "--kubeconfig", "k", "--metrics-port", "9100"]).metrics_port == 9100


def test_controllers_take_kube_controller_managers_cidr_and_slice_flags():
    defaults = _parser().parse_args(["controllers", "--kubeconfig", "k"])
    assert (defaults.cluster_cidr, defaults.node_cidr_mask_size, defaults.max_endpoints_per_slice) == (
        "100.64.0.0/16", 24, 100)
    args = _parser().parse_args(["controllers", "--kubeconfig", "k", "--cluster-cidr", "10.244.0.0/16",
                                 "--node-cidr-mask-size", "26", "--max-endpoints-per-slice", "50"])
    assert (args.cluster_cidr, args.node_cidr_mask_size, args.max_endpoints_per_slice) == ("10.244.0.0/16", 26, 50)


def test_up_takes_a_shutdown_grace_period_of_10_seconds_by_default():
    assert _parser().parse_args(["up", "--data-dir", "d"]).shutdown_grace_period == 10
    assert _parser().parse_args(["up", "--data-dir", "d", "--shutdown-grace-period", "0"]).shutdown_grace_period == 0
