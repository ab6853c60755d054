"""The source loses its tail and moves on: the shadow finds where they part, truncates, and follows.

This is what an unflushed tail lost in a machine crash, or Kafka's unclean leader election, does to a
source. Here the source is killed, the end of its partition's segment file is cut off at a batch boundary
(as the page cache would have lost it), and it restarts: a new leader epoch (umbra bumps it at every
start, as Kafka does at every election), then new records at the offsets the lost ones had.
"""

from __future__ import annotations

from pathlib import Path

from harness import BrokerProcess, create_topic, http_get
from link_api import create_link, link_spec
from shadow_helpers import assert_logs_equal, partition_status, produce, read_images, wait_in_sync, wait_link_state

from umbra.records.batch import iter_batch_headers

TOPIC = "div"
TOPICS = {TOPIC: 2}


def _records(label: str, count: int, partition: int) -> list[dict[str, object]]:
    return [{"key": f"{label}-{i}".encode(), "value": f"{label} value {i}".encode() * 3, "partition": partition}
            for i in range(count)]


def _cut_tail(source: BrokerProcess, partition: int, batches_lost: int) -> int:
    """Cut the last ``batches_lost`` batches off the partition's (only) segment; return the new log end."""
    directory = Path(source.data_dir) / f"{TOPIC}-{partition}"
    segment = sorted(directory.glob("*.log"))[-1]
    data = segment.read_bytes()
    headers = list(iter_batch_headers(data))
    assert len(headers) > batches_lost + 5, f"only {len(headers)} batches: the test needs more"
    cut = headers[-batches_lost]
    with open(segment, "r+b") as handle:
        handle.truncate(cut.position)
    return cut.base_offset


def test_shadow_truncates_where_a_source_that_lost_its_tail_parts(clusters: tuple[BrokerProcess, BrokerProcess]
                                                                  ) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=2)
    for partition in (0, 1):
        produce(source.bootstrap, TOPIC, _records(f"first-{partition}", 400, partition),
                **{"batch.num.messages": 10, "linger.ms": 5})
    create_link(shadow, link_spec(source, prefixes=(TOPIC,)))
    wait_in_sync(source, shadow, TOPICS, timeout=60)
    shadow_end = read_images(shadow, TOPICS)[(TOPIC, 0)].high_watermark

    source.kill9()
    lost_from = _cut_tail(source, 0, batches_lost=8)
    assert lost_from < shadow_end
    source.start()
    # The source moves on: new records at the offsets of the lost ones, and past them.
    produce(source.bootstrap, TOPIC, _records("second", 200, 0), **{"batch.num.messages": 10, "linger.ms": 5})

    wait_in_sync(source, shadow, TOPICS, timeout=60)
    assert_logs_equal(source, shadow, TOPICS)

    # Status says what happened: one truncation of partition 0, from the shadow's old end to where the
    # source's old epoch ends; partition 1 kept everything.
    parts = partition_status(shadow)
    diverged, kept = parts[(TOPIC, 0)], parts[(TOPIC, 1)]
    assert diverged["truncations"] == 1, diverged
    assert diverged["truncated_records"] == shadow_end - lost_from, diverged
    truncation = diverged["last_truncation"]
    assert (truncation["from_offset"], truncation["to_offset"]) == (shadow_end, lost_from), truncation
    assert "ends at" in truncation["reason"], truncation
    assert kept["truncations"] == 0 and kept["last_truncation"] is None, kept
    assert diverged["state"] == "ACTIVE" and kept["state"] == "ACTIVE"
    doc = wait_link_state(shadow, lambda d: d, "status")
    assert any("truncated the shadow from offset" in e["event"] for e in doc["events"]), doc["events"]
    _, body = http_get(shadow.admin_url + "/metrics")
    metrics = body.decode()
    labels = f'link="dr",partition="0",topic="{TOPIC}"'
    assert f"umbra_shadow_truncations_total{{{labels}}} 1.0" in metrics
    assert f"umbra_shadow_truncated_records_total{{{labels}}} {float(shadow_end - lost_from)}" in metrics
