"""Source outage: the source goes away (clean stop, or kill -9) and comes back on the same ports with the
same data. Meanwhile the link reports ``LINK_UNAVAILABLE`` and the shadow broker stays responsive without
spinning; afterwards the link recovers to ACTIVE by itself and the logs end up equal.
"""

from __future__ import annotations

import time

import pytest
from harness import create_topic, wait_until
from link_api import create_link, link_spec, link_status
from shadow_helpers import (
    assert_logs_equal,
    cpu_seconds,
    metadata_ok,
    produce,
    wait_in_sync,
    wait_link_state,
)

TOPIC = "events"
TOPICS = {TOPIC: 3}
QUIET_WINDOW_SECONDS = 2.0
MAX_CPU_FRACTION = 0.5  # of one core, over the quiet window: a broker retrying with backoff uses far less


def _records(start: int, count: int) -> list[dict]:
    return [{"key": b"k%d" % i, "value": b"event-%d" % i, "partition": i % 3} for i in range(start, start + count)]


def _unavailable(doc: dict) -> list[str]:
    """Names of tasks and partitions reporting LINK_UNAVAILABLE."""
    return [t["task"] for t in doc["tasks"] if t["state"] == "LINK_UNAVAILABLE"] + \
        [f"{p['topic']}-{p['partition']}" for p in doc["partitions"] if p["state"] == "LINK_UNAVAILABLE"]


def _recovered(doc: dict) -> bool:
    return doc["state"] == "ACTIVE" and not _unavailable(doc) \
        and all(t["state"] == "ACTIVE" for t in doc["tasks"]) \
        and all(p["state"] == "ACTIVE" for p in doc["partitions"] if p["topic"] == TOPIC)


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_link_survives_a_source_outage(clusters, how: str) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=3)
    produce(source.bootstrap, TOPIC, _records(0, 600))
    create_link(shadow, link_spec(source, prefixes=(TOPIC,)))
    wait_in_sync(source, shadow, TOPICS, timeout=20)
    before = wait_link_state(shadow, lambda d: d if _recovered(d) else None, "the link ACTIVE before the outage")
    fetch_tasks = [t["task"] for t in before["tasks"] if t["task"].startswith("fetch-from-source-broker")]
    assert fetch_tasks, before["tasks"]

    # The outage. Nothing is produced while the source is down.
    source.stop() if how == "stop" else source.kill9()
    assert not source.running
    down = wait_link_state(shadow, lambda d: _unavailable(d), "LINK_UNAVAILABLE in the status", timeout=20)
    # The replication path itself notices: the fetch task, or every partition, not just a periodic syncer.
    doc = link_status(shadow)
    assert set(fetch_tasks) & set(_unavailable(doc)) or \
        all(p["state"] == "LINK_UNAVAILABLE" for p in doc["partitions"] if p["topic"] == TOPIC), (down, doc)

    # The shadow broker stays responsive and does not spin while it retries: over a window of a couple of
    # seconds it answers Metadata and status, and uses well under a core.
    cpu_before, started = cpu_seconds(shadow.pid), time.monotonic()
    answers = []

    def window_over() -> bool:
        answers.append(metadata_ok(shadow))
        assert _unavailable(link_status(shadow)), "the link claims to be fine while the source is down"
        return time.monotonic() - started >= QUIET_WINDOW_SECONDS

    wait_until(window_over, timeout=QUIET_WINDOW_SECONDS + 10, interval=0.25, message="the quiet window")
    elapsed = time.monotonic() - started
    cpu_fraction = (cpu_seconds(shadow.pid) - cpu_before) / elapsed
    assert answers and all(answers), "the shadow broker did not answer Metadata during the outage"
    assert cpu_fraction < MAX_CPU_FRACTION, f"the shadow used {cpu_fraction:.0%} of a core while the source was down"

    # The source comes back with the same data; new records arrive; the link recovers by itself.
    source.restart()
    produce(source.bootstrap, TOPIC, _records(600, 600))
    wait_link_state(shadow, _recovered, "the link ACTIVE again after the source came back", timeout=30)
    doc = wait_in_sync(source, shadow, TOPICS, timeout=30)
    assert sum(p["shadow_high_watermark"] for p in doc["partitions"] if p["topic"] == TOPIC) == 1200
    assert all(p["gaps"] == 0 for p in doc["partitions"]), doc["partitions"]
    assert_logs_equal(source, shadow, TOPICS)
    print(f"{how}: unavailable {down}; shadow CPU {cpu_fraction:.1%} of a core during the outage")
