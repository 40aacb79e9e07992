"""`EventRecorder` against a real API server: legacy and new-style events, repeats counted, failures swallowed."""

from __future__ import annotations

import asyncio

from timoner.client import EVENTS, EventRecorder


def pod(ns, name="web"):
    # As an informer keeps it: a list item, without kind and apiVersion.
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "7"}}


async def test_legacy_events_and_their_repeats(client, ns):
    recorder = EventRecorder(client, component="kubelet", host="node-1")
    await recorder.event(pod(ns), "Warning", "Unhealthy", "Liveness probe failed: nope",
                         field_path="spec.containers{c}", kind="Pod", api_version="v1")
    [event] = (await client.list(EVENTS, namespace=ns))["items"]
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"] == {"kind": "Pod", "namespace": ns, "name": "web", "uid": "uid-web",
                                       "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{c}"}
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Warning", "Unhealthy", "Liveness probe failed: nope", 1)
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("kubelet", "node-1")
    assert event.get("eventTime") is None and event["firstTimestamp"] == event["lastTimestamp"]

    # The same event again, even concurrently: one object, counted; another message is another event.
    await asyncio.gather(*(recorder.event(pod(ns), "Warning", "Unhealthy", "Liveness probe failed: nope",
                                          field_path="spec.containers{c}", kind="Pod", api_version="v1")
                           for _ in range(3)))
    await recorder.event(pod(ns), "Warning", "Unhealthy", "Liveness probe failed: other",
                         field_path="spec.containers{c}", kind="Pod", api_version="v1")
    items = (await client.list(EVENTS, namespace=ns))["items"]
    by_message = {e["message"]: e for e in items}
    assert len(items) == 2
    assert by_message["Liveness probe failed: nope"]["count"] == 4
    assert by_message["Liveness probe failed: nope"]["metadata"]["name"] == event["metadata"]["name"]
    assert by_message["Liveness probe failed: other"]["count"] == 1

    # Deleted meanwhile: posted again, the count carried on.
    await client.delete(EVENTS, event["metadata"]["name"], namespace=ns)
    await recorder.event(pod(ns), "Warning", "Unhealthy", "Liveness probe failed: nope",
                         field_path="spec.containers{c}", kind="Pod", api_version="v1")
    again = [e for e in (await client.list(EVENTS, namespace=ns))["items"]
             if e["message"] == "Liveness probe failed: nope"]
    assert len(again) == 1 and again[0]["count"] == 5 and again[0]["metadata"]["name"] != event["metadata"]["name"]


async def test_new_style_events_carry_action_and_event_time(client, ns):
    recorder = EventRecorder(client, component="default-scheduler", instance="default-scheduler-host",
                             action="Scheduling")
    await recorder.event(pod(ns), "Normal", "Scheduled", "Successfully assigned", kind="Pod", api_version="v1")
    [event] = (await client.list(EVENTS, namespace=ns))["items"]
    assert event["action"] == "Scheduling" and event["eventTime"]
    assert event["reportingInstance"] == "default-scheduler-host"
    assert event["source"] == {"component": "default-scheduler"}


async def test_a_rejected_event_is_logged_not_raised(client, ns, caplog):
    recorder = EventRecorder(client, component="kubelet", host="node-1")
    await recorder.event(pod("no-such-namespace-here"), "Normal", "Killing", "Stopping container c",
                         kind="Pod", api_version="v1")
    assert "could not record Killing event" in caplog.text
