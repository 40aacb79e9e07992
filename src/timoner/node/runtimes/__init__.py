"""Runtimes the node agent can drive: each implements `timoner.node.runtime.Runtime`.

- `hollow`: simulated containers, for pod-worker tests and scale tests.
"""
