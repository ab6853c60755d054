"""Consumer failover: a group's committed offsets carry over from the source to the shadow, unchanged.

1. A consumer group reads the first half of every partition of a topic on the source, commits
   synchronously and leaves.
2. The link replicates the topic and copies the group's committed offsets; the test polls the shadow's
   committed offsets (OffsetFetch via a consumer's ``committed()``) until they equal the source's.
3. Failover through the product's CLI: ``umbra shadow --admin-url ... failover dr --topic T --wait``.
4. The same group, subscribed on the shadow, starts exactly at the committed offsets. Together, what it
   read on the source and on the shadow is every record, each once, with the values produced at those
   offsets: no gap, no skip, no duplicate.
5. A producer writes to the now-writable shadow topic: the new records get the offsets right after the
   source's high watermark, and its producer id is above every replicated producer id.
"""

from __future__ import annotations

import subprocess
import sys

from confluent_kafka import Consumer, TopicPartition
from harness import create_topic, wait_until
from link_api import create_link, link_spec, link_status
from shadow_helpers import (
    produce,
    read_images,
    wait_in_sync,
    watermarks,
)

TOPIC = "orders"
PARTITIONS = 4
TOPICS = {TOPIC: PARTITIONS}
GROUP = "billing"
RECORDS = 2000


def _consumer(bootstrap: str, **extra: object) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 100}
    conf.update(extra)
    return Consumer(conf)


def _committed(bootstrap: str) -> dict[int, int]:
    """The group's committed offsets by OffsetFetch, without joining the group."""
    consumer = _consumer(bootstrap)
    try:
        got = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def _consume_first_half_on_source(bootstrap: str, half: dict[int, int]) -> dict[tuple[int, int], bytes]:
    """Subscribe as the group, read offsets [0, half[p]) of every partition, commit them synchronously, close."""
    consumer = _consumer(bootstrap, **{"enable.auto.offset.store": False, "auto.offset.reset": "earliest"})
    seen: dict[tuple[int, int], bytes] = {}
    consumer.subscribe([TOPIC])
    try:
        def read_half() -> bool:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                p, offset = message.partition(), message.offset()
                if offset < half[p]:
                    assert (p, offset) not in seen
                    seen[(p, offset)] = message.value()
                    consumer.store_offsets(message)
                else:
                    consumer.pause([TopicPartition(TOPIC, p)])
            return all(sum(1 for (q, _) in seen if q == p) == half[p] for p in range(PARTITIONS))

        wait_until(read_half, timeout=30, interval=0, message="the group reading half of every partition")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return seen


def test_group_resumes_on_the_shadow_at_its_committed_offsets(clusters) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=PARTITIONS)
    delivered = produce(source.bootstrap, TOPIC, ({"key": b"order-%d" % i, "value": b"order-%d" % i}
                                                  for i in range(RECORDS)))
    hw = {p: hw for (_, p), (_, hw) in watermarks(source.bootstrap, TOPICS).items()}
    assert sum(hw.values()) == RECORDS and min(hw.values()) > 100
    half = {p: hw[p] // 2 + p for p in range(PARTITIONS)}  # not all at the same place
    produced_at = {}
    for i, (p, offset) in enumerate(delivered):
        produced_at[(p, offset)] = b"order-%d" % i

    # 1. The group reads half on the source and commits.
    on_source = _consume_first_half_on_source(source.bootstrap, half)
    source_committed = _committed(source.bootstrap)
    assert source_committed == half

    # 2. The link replicates the topic and the group's offsets.
    create_link(shadow, link_spec(source, prefixes=(TOPIC,)))
    wait_in_sync(source, shadow, TOPICS, timeout=30)
    wait_until(lambda: _committed(shadow.bootstrap) == source_committed, timeout=30, interval=0.2,
               message=lambda: f"offsets synced: shadow {_committed(shadow.bootstrap)} source {source_committed}")
    replicated_pids = {pid for img in read_images(shadow, TOPICS).values() for pid in img.producer_ids}
    assert replicated_pids and min(replicated_pids) >= 0

    # 3. Failover with the CLI, waiting until it is done.
    cli = subprocess.run([sys.executable, "-m", "umbra", "shadow", "--admin-url", shadow.admin_url,
                          "failover", "dr", "--topic", TOPIC, "--wait", "--timeout", "30"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, f"stdout: {cli.stdout}\nstderr: {cli.stderr}"
    assert "1/1 topics FAILED_OVER" in cli.stdout, cli.stdout
    doc = link_status(shadow)
    assert [t["state"] for t in doc["topics"] if t["topic"] == TOPIC] == ["FAILED_OVER"], doc["topics"]
    # The replicator is gone and nothing moved: the shadow still ends where the source does.
    assert {p: h for (_, p), (_, h) in watermarks(shadow.bootstrap, TOPICS).items()} == hw

    # 4. The same group resumes on the shadow. "latest" as the reset policy: a partition without the synced
    # commit would start at its end and its second half would be missing below.
    consumer = _consumer(shadow.bootstrap, **{"auto.offset.reset": "latest"})
    on_shadow: dict[tuple[int, int], bytes] = {}
    first_offset: dict[int, int] = {}
    consumer.subscribe([TOPIC])
    try:
        def read_rest() -> bool:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                assert message.error() is None, message.error()
                p, offset = message.partition(), message.offset()
                first_offset.setdefault(p, offset)
                assert (p, offset) not in on_shadow, f"offset {offset} of partition {p} delivered twice"
                on_shadow[(p, offset)] = message.value()
            return all(max((o for (q, o) in on_shadow if q == p), default=-1) == hw[p] - 1 for p in range(PARTITIONS))

        wait_until(read_rest, timeout=30, interval=0, message=lambda: f"the group reading the rest on the shadow "
                   f"(first offsets {first_offset}, read {len(on_shadow)})")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert first_offset == source_committed, "the group did not resume at its committed offsets"
    assert not set(on_source) & set(on_shadow), "records consumed twice across the failover"
    everything = {**on_source, **on_shadow}
    assert sorted(everything) == sorted((p, o) for p in range(PARTITIONS) for o in range(hw[p])), "a gap"
    assert everything == produced_at

    # 5. The failed-over topic is writable, and new records continue at the next offsets.
    new = produce(shadow.bootstrap, TOPIC, ({"key": b"after-%d" % i, "value": b"after-%d" % i, "partition": i % PARTITIONS}
                                            for i in range(40)))
    for p in range(PARTITIONS):
        offsets = [o for q, o in new if q == p]
        assert offsets == list(range(hw[p], hw[p] + 10)), f"partition {p}: new records at {offsets}, source hw {hw[p]}"
    images = read_images(shadow, TOPICS)
    for p in range(PARTITIONS):
        img = images[(TOPIC, p)]
        new_pids = {pid for base, pid in zip(img.base_offsets, img.producer_ids, strict=True) if base >= hw[p]}
        assert new_pids and min(new_pids) > max(replicated_pids), (new_pids, replicated_pids)
    print(f"replicated producer ids {sorted(replicated_pids)}; after failover {sorted(new_pids)}")
    assert _committed(shadow.bootstrap) == hw, "the group's commit on the shadow after failover"
