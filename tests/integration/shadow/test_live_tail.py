"""Live tail: while a producer writes continuously to the source, the shadow keeps up, and status lag
returns to 0 within a few seconds of the producer stopping.

During the run the test samples the link's status and the source's high watermarks. It requires that the
shadow's high watermark advanced while the producer was still writing (replication that stalls until the
producer stops, or never moves, fails), that the reported lag is the source's high watermark minus the
shadow's, and in the end that the high watermarks and batch bytes of both sides are equal.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from harness import create_topic, wait_until
from link_api import create_link, link_spec, link_status
from shadow_helpers import (
    assert_logs_equal,
    wait_in_sync,
    watermarks,
)

TOPIC = "tail"
TOPICS = {TOPIC: 3}
PRODUCE_SECONDS = 5.0
MAX_RECORDS = 200_000
CATCH_UP_SECONDS = 5.0  # "within a few seconds of the producer stopping"


class ContinuousProducer:
    """Writes to the source in a thread until stopped, or until a time or count bound is reached."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "compression.type": "lz4"})
        self.sent = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, _message) -> None:
        if err is not None:
            self.errors.append(str(err))

    def _run(self) -> None:
        deadline = time.monotonic() + PRODUCE_SECONDS
        while not self.stop_event.is_set() and self.sent < MAX_RECORDS and time.monotonic() < deadline:
            try:
                self.producer.produce(TOPIC, key=b"k%d" % self.sent, value=b"v" * 200, partition=self.sent % 3,
                                      on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:
                self.producer.poll(0.01)
                continue
            if self.sent % 50 == 0:
                # Pace the producer (~10k records/s at most): a steady stream rather than one burst.
                self.producer.poll(0.005)
        self.producer.flush(30)

    def start(self) -> None:
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_lag_returns_to_zero_after_a_continuous_producer_stops(clusters) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=3)
    create_link(shadow, link_spec(source, prefixes=(TOPIC,)))
    wait_in_sync(source, shadow, TOPICS, timeout=20)  # the empty topic is replicated and tasks are routed

    producer = ContinuousProducer(source.bootstrap)
    producer.start()
    # (total shadow HW, total status lag, total source HW by ListOffsets right after) while producing
    samples: list[tuple[int, int, int]] = []
    probe = Consumer({"bootstrap.servers": source.bootstrap, "group.id": "tail-probe"})

    def sample() -> bool:
        doc = link_status(shadow)
        true_hw = sum(probe.get_watermark_offsets(TopicPartition(TOPIC, i), timeout=5)[1] for i in range(3))
        parts = [p for p in doc["partitions"] if p["topic"] == TOPIC]
        assert len(parts) == 3
        for p in parts:
            # Lag is in records: the source's high watermark (from Fetch responses) minus the shadow's.
            assert p["lag"] == max(p["source_high_watermark"] - p["shadow_high_watermark"], 0), p
            assert p["state"] in ("ACTIVE", "STARTING"), p
        shadow_hw = sum(p["shadow_high_watermark"] for p in parts)
        assert shadow_hw <= true_hw and sum(p["source_high_watermark"] for p in parts) <= true_hw
        if producer.running:
            samples.append((shadow_hw, sum(p["lag"] for p in parts), true_hw))
        return not producer.running

    try:
        wait_until(sample, timeout=PRODUCE_SECONDS + 30, interval=0.1, message="the producer to finish")
    finally:
        probe.close()
    producer.join()
    stopped_at = time.monotonic()
    assert not producer.errors, producer.errors[:5]
    assert producer.sent > 5000, f"only {producer.sent} records produced: the run tests nothing"

    doc = wait_in_sync(source, shadow, TOPICS, timeout=CATCH_UP_SECONDS)
    caught_up_after = time.monotonic() - stopped_at
    source_hw = {tp: hw for tp, (_, hw) in watermarks(source.bootstrap, TOPICS).items()}
    assert sum(source_hw.values()) == producer.sent
    for p in doc["partitions"]:
        assert p["lag"] == 0
        assert p["shadow_high_watermark"] == p["source_high_watermark"] == source_hw[(p["topic"], p["partition"])]

    # Replication kept up during the run: the shadow's high watermark moved while the producer was writing,
    # through several values, and got past half of what was finally written before the producer stopped.
    shadow_hws = [s[0] for s in samples]
    assert len(samples) >= 10, f"only {len(samples)} status samples while producing"
    assert len(set(shadow_hws)) >= 5, f"shadow high watermark barely moved while producing: {samples}"
    assert shadow_hws == sorted(shadow_hws), "the shadow high watermark went backwards"
    assert max(shadow_hws) >= producer.sent // 2, (max(shadow_hws), producer.sent, samples[-5:])
    assert_logs_equal(source, shadow, TOPICS)
    print(f"live tail: {producer.sent} records, {len(samples)} samples; max status lag {max(s[1] for s in samples)}; "
          f"max behind the source's ListOffsets {max(s[2] - s[0] for s in samples)}; "
          f"lag 0 {caught_up_after:.2f}s after the producer stopped")
