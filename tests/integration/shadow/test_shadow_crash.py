"""Crash: ``kill -9`` the shadow broker while it copies a large backlog, restart it, and replication resumes.

The source holds 100k records in small batches. The link fetches in small pieces (32 KiB per partition), so
the copy takes many rounds; the test polls status and kills the shadow when it is partway, twice. After each restart
on the same data directory the link resumes by itself, and in the end every partition's log start, high
watermark and batch bytes (leader epoch masked) equal the source's, contiguous from the start: no gap, no
duplicate, and the status reports no skipped records.
"""

from __future__ import annotations

from harness import create_topic, wait_until
from link_api import create_link, link_spec, link_status
from shadow_helpers import (
    assert_logs_equal,
    produce,
    wait_in_sync,
)

TOPIC = "bulk"
PARTITIONS = 4
TOPICS = {TOPIC: PARTITIONS}
RECORDS = 100_000


def test_shadow_killed_mid_replication_resumes_without_gap_or_duplicate(clusters) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=PARTITIONS)
    produce(source.bootstrap, TOPIC, ({"key": b"%d" % i, "value": (b"%08d" % i) * 12, "partition": i % PARTITIONS}
                                      for i in range(RECORDS)),
            **{"batch.size": 16384, "linger.ms": 5, "compression.type": "none"})

    spec = link_spec(source, prefixes=(TOPIC,))
    spec["source"]["client"].update(fetch_max_bytes=16 * 1024, fetch_partition_max_bytes=16 * 1024)
    create_link(shadow, spec)

    # Two crashes: early in the copy, and again after the first restart has resumed it (the copy goes on while
    # the restarted broker is getting ready, so the second one is "anywhere before the end").
    copied_at_kill: list[int] = []
    for low, high in ((0.1, 0.4), (0.0, 0.95)):
        def partway(low: float = low, high: float = high) -> bool:
            parts = [p for p in link_status(shadow)["partitions"] if p["topic"] == TOPIC]
            copied = sum(max(p["shadow_high_watermark"], 0) for p in parts)
            assert copied <= RECORDS * high, f"{copied} records copied before the test could kill the shadow"
            if copied >= RECORDS * low and copied > max(copied_at_kill, default=0):
                copied_at_kill.append(copied)
                return True
            return False

        wait_until(partway, timeout=30, interval=0.01, message="the shadow partway through the backlog")
        shadow.kill9()
        assert shadow.last_exit_code == -9
        shadow.restart()

    doc = wait_in_sync(source, shadow, TOPICS, timeout=60)
    assert doc["state"] == "ACTIVE"
    parts = [p for p in doc["partitions"] if p["topic"] == TOPIC]
    # The restarted broker appended batches itself: the kill really was mid-copy.
    assert any(p["ms_since_last_batch"] is not None for p in parts), parts
    assert all(p["gaps"] == 0 and p["skipped_records"] == 0 for p in parts), parts
    assert sum(p["shadow_high_watermark"] for p in parts) == RECORDS

    images = assert_logs_equal(source, shadow, TOPICS)  # also checks contiguity: no gap, no overlap
    assert sum(img.record_count for img in images.values()) == RECORDS
    assert all(img.log_start_offset == 0 for img in images.values())
    print(f"killed the shadow with {copied_at_kill} of {RECORDS} records copied; "
          f"{sum(len(img.batches) for img in images.values())} batches equal after the restart")
