"""umbra.client against a real `umbra broker`: metadata, offsets, raw fetches in sessions, admin reads, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer, Producer
from harness import BrokerProcess, create_topic, wait_until
from kafka import KafkaConsumer, TopicPartition
from kafka.record import MemoryRecords

from umbra.client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    BrokerFetcher,
    ClientConnectionError,
    ClientTimeout,
    ConfigSource,
    ConnectionSettings,
    FetchSettings,
    SourceCluster,
    UnsupportedApiError,
)
from umbra.records.batch import iter_batch_headers

T = TypeVar("T")
SETTINGS = ConnectionSettings(connect_timeout_s=3.0, request_timeout_s=5.0)


def run(coro: Awaitable[T], timeout: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def poll_until(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Await ``predicate`` until it returns something truthy; client errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await predicate()
            if result:
                return result
        except (ClientConnectionError, ClientTimeout) as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what} (last error: {last!r})")


def produce(bootstrap: str, topic: str, count: int, *, compression: str = "none", idempotent: bool = True,
            prefix: str = "v") -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": compression,
                         "enable.idempotence": idempotent, "linger.ms": 5, "batch.num.messages": 50})
    for i in range(count):
        producer.produce(topic, key=f"k{i % 13}".encode(), value=f"{prefix}-{i}".encode(), partition=i % 3,
                         headers=[("h", str(i).encode())])
    assert producer.flush(30) == 0


def cluster_for(broker: BrokerProcess) -> SourceCluster:
    return SourceCluster([broker.bootstrap], "client-it", connection_settings=SETTINGS)


async def fetch_all(fetcher: BrokerFetcher, end_offsets: dict[tuple[str, int], int],
                    max_fetches: int = 500) -> dict[tuple[str, int], bytes]:
    """Fetch until every partition reached its end offset, moving offsets only as a replicator would."""
    collected: dict[tuple[str, int], bytearray] = {tp: bytearray() for tp in end_offsets}
    for _ in range(max_fetches):
        if all(fetcher.fetch_offset(tp) >= end for tp, end in end_offsets.items()):
            return {tp: bytes(data) for tp, data in collected.items()}
        result = await fetcher.fetch()
        for tp, part in result.partitions.items():
            assert part.error_code == 0, (tp, part.error_code)
            headers = list(iter_batch_headers(part.records))
            if headers:
                assert headers[0].base_offset <= part.fetch_offset <= headers[0].last_offset
                collected[tp] += part.records
                fetcher.set_offset(tp, headers[-1].next_offset)
    raise AssertionError(f"not caught up after {max_fetches} fetches: {fetcher.partitions}")


def test_metadata_has_topic_ids_and_leaders(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "meta", partitions=3)

    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            snapshot = await cluster.refresh_metadata()
            topic = snapshot.topics["meta"]
            assert topic.topic_id is not None and topic.topic_id.int != 0
            assert sorted(topic.partitions) == [0, 1, 2]
            assert all(p.leader_id in snapshot.brokers for p in topic.partitions.values())
            assert all(p.leader_epoch >= 0 for p in topic.partitions.values())
            assert not topic.is_internal
            connection = await cluster.connection_for(topic.partitions[0].leader_id)
            assert connection.version(3) >= 10
            partial = await cluster.refresh_metadata(["meta", "missing-topic"])
            assert "meta" in partial.topics and "missing-topic" not in partial.topics

    run(scenario())


def test_list_offsets_earliest_and_latest(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "offsets", partitions=3)
    produce(broker.bootstrap, "offsets", 300)

    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            tps = [("offsets", p) for p in range(3)]
            earliest = await cluster.list_offsets(tps, EARLIEST_TIMESTAMP)
            latest = await cluster.list_offsets(tps, LATEST_TIMESTAMP)
            assert {tp: o.offset for tp, o in earliest.items()} == dict.fromkeys(tps, 0)
            assert {tp: o.offset for tp, o in latest.items()} == dict.fromkeys(tps, 100)
            missing = await cluster.list_offsets([("offsets", 9)], LATEST_TIMESTAMP)
            assert missing[("offsets", 9)].error_code != 0

    run(scenario())


def test_fetched_bytes_are_exactly_the_batches_a_consumer_sees(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "raw", partitions=3)
    for round_number, compression in enumerate(["none", "lz4", "zstd", "gzip"]):
        produce(broker.bootstrap, "raw", 240, compression=compression, idempotent=round_number % 2 == 0,
                prefix=f"r{round_number}")

    async def scenario() -> dict[tuple[str, int], bytes]:
        async with cluster_for(broker) as cluster:
            snapshot = await cluster.refresh_metadata()
            tps = [("raw", p) for p in range(3)]
            latest = await cluster.list_offsets(tps, LATEST_TIMESTAMP)
            fetcher = cluster.fetcher_for(snapshot.topics["raw"].partitions[0].leader_id)
            for tp in tps:
                fetcher.add_partition(tp, 0, snapshot.topics["raw"].topic_id)
            try:
                return await fetch_all(fetcher, {tp: latest[tp].offset for tp in tps})
            finally:
                await fetcher.close()

    raw = run(scenario())
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition("raw", p) for p in range(3)])
        seen = [(m.partition, m.offset, m.key, m.value, m.timestamp, tuple(m.headers)) for m in consumer]
    finally:
        consumer.close()
    assert len(seen) == 960
    ours = []
    for (_, partition), data in raw.items():
        headers = list(iter_batch_headers(data))
        assert headers[0].base_offset == 0
        assert sum(h.size_in_bytes for h in headers) == len(data)  # nothing but whole batches
        for previous, following in zip(headers, headers[1:], strict=False):
            assert following.base_offset == previous.next_offset  # no gap, no overlap
        batches = MemoryRecords(data)
        while (batch := batches.next_batch()) is not None:
            assert batch.validate_crc()
            for record in batch:
                ours.append((partition, record.offset, record.key, record.value, record.timestamp,
                             tuple(record.headers)))
    assert sorted(ours) == sorted(seen)


def test_incremental_fetch_session_keeps_working_over_many_fetches(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "session", partitions=3)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})

    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            snapshot = await cluster.refresh_metadata()
            topic = snapshot.topics["session"]
            fetcher = cluster.fetcher_for(topic.partitions[0].leader_id, FetchSettings(fetch_max_wait_ms=50))
            for p in range(3):
                fetcher.add_partition(("session", p), 0, topic.topic_id)
            sessions, epochs, fulls, total = set(), [], 0, 0
            offset_2 = 0
            try:
                for round_number in range(40):
                    producer.produce("session", value=f"m{round_number}".encode(), partition=round_number % 3)
                    producer.flush(10)
                    result = await fetcher.fetch()
                    sessions.add(result.session_id)
                    epochs.append(result.epoch)
                    fulls += result.was_full
                    for tp, part in result.partitions.items():
                        headers = list(iter_batch_headers(part.records))
                        total += sum(h.record_count for h in headers)
                        if headers:
                            fetcher.set_offset(tp, headers[-1].next_offset)
                    if round_number == 20:
                        offset_2 = fetcher.fetch_offset(("session", 2))
                        fetcher.remove_partition(("session", 2))  # forgotten in the next request
                    if round_number == 30:
                        fetcher.add_partition(("session", 2), offset_2, topic.topic_id)
                remaining = await fetch_all(fetcher, {("session", p): [14, 13, 13][p] for p in range(3)})
                total += sum(h.record_count for data in remaining.values() for h in iter_batch_headers(data))
            finally:
                await fetcher.close()
            assert fulls == 1 and len(sessions) == 1 and 0 not in sessions
            assert epochs[:5] == [0, 1, 2, 3, 4]
            assert total == 40

    run(scenario())


def test_describe_configs_returns_topic_overrides_with_sources(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "configured", partitions=1,
                 config={"retention.ms": "123456", "max.message.bytes": "200000"})

    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            configs = await cluster.describe_configs(["configured", "not-there"])
            assert set(configs) == {"configured"}
            entries = configs["configured"]
            assert entries["retention.ms"].value == "123456"
            assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG
            assert entries["max.message.bytes"].value == "200000"
            assert all(e.source != ConfigSource.DEFAULT_CONFIG for e in entries.values())
            everything = await cluster.describe_configs(["configured"], include_defaults=True)
            assert len(everything["configured"]) > len(entries)

    run(scenario())


def test_list_groups_and_offset_fetch_after_a_consumer_commits(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "grouped", partitions=3)
    produce(broker.bootstrap, "grouped", 30, idempotent=False)

    async def supported() -> bool:
        async with cluster_for(broker) as cluster:
            await cluster.refresh_metadata()
            connection = await cluster.connection_for(next(iter(cluster.metadata.brokers)))
            return connection.supports(16) and connection.supports(10) and connection.supports(9)

    if not run(supported()):
        pytest.xfail("the broker does not implement ListGroups/FindCoordinator/OffsetFetch yet")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-client", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["grouped"])
        messages = []
        wait_until(lambda: messages.extend(m for m in [consumer.poll(0.2)] if m and not m.error()) or
                   len(messages) >= 30, timeout=30, message="consumer to read 30 records")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            groups = {g.group_id: g for g in await cluster.list_groups()}
            assert "g-client" in groups and groups["g-client"].protocol_type == "consumer"
            all_partitions = [("grouped", p) for p in range(3)]
            committed = await cluster.offset_fetch("g-client", all_partitions)
            assert {tp: c.offset for tp, c in committed.items()} == {("grouped", p): 10 for p in range(3)}
            some = await cluster.offset_fetch("g-client", [("grouped", 1)])
            assert list(some) == [("grouped", 1)]
            assert await cluster.offset_fetch("no-such-group", all_partitions) == {}
            assert await cluster.offset_fetch("g-client", []) == {}

    run(scenario())


def test_describe_acls(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            try:
                bindings = await cluster.describe_acls()
            except UnsupportedApiError:
                pytest.xfail("the broker does not implement DescribeAcls yet")
            assert isinstance(bindings, list)
            assert all(len(binding) == 7 for binding in bindings)

    run(scenario())


def test_stopped_broker_raises_promptly_and_reconnects_after_restart(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "outage", partitions=3)
    produce(broker.bootstrap, "outage", 3)  # one record per partition

    async def scenario() -> None:
        async with cluster_for(broker) as cluster:
            snapshot = await cluster.refresh_metadata()
            leader = snapshot.topics["outage"].partitions[0].leader_id
            fetcher = cluster.fetcher_for(leader)
            fetcher.add_partition(("outage", 0), 0, snapshot.topics["outage"].topic_id)
            first = await fetcher.fetch()
            assert first.partitions[("outage", 0)].high_watermark == 1
            fetcher.set_offset(("outage", 0), 1)  # caught up: the next fetch long-polls

            # Stopped before or during the long poll, the fetch must fail, not hang.
            long_poll = asyncio.create_task(fetcher.fetch())
            await asyncio.to_thread(broker.stop)
            started = time.monotonic()
            with pytest.raises((ClientConnectionError, ClientTimeout)):
                await long_poll
            for _ in range(3):  # each retry fails fast too: refused, after a short backoff
                with pytest.raises(ClientConnectionError):
                    await fetcher.fetch()
            with pytest.raises(ClientConnectionError):
                await cluster.list_offsets([("outage", 0)], LATEST_TIMESTAMP)
            assert time.monotonic() - started < 10

            await asyncio.to_thread(broker.start)
            result = await poll_until(fetcher.fetch, 30, "a fetch after the restart")
            assert result.was_full
            latest = await poll_until(lambda: cluster.list_offsets([("outage", 0)], LATEST_TIMESTAMP), 30,
                                      "list_offsets after the restart")
            assert latest[("outage", 0)].offset == 1
            await fetcher.close()

    run(scenario(), timeout=120)
