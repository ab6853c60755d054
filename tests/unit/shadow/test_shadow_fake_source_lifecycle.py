"""The link's lifecycle against a fake source: failover with appends in flight, a restart in the middle of failing
over, and ACL sync across a pause.

A restart is the shadow's objects (broker storage and metadata, manager, links) built again over the same data
directory, after the old ones stopped as a broker process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_source import FakeSource
from shadow_harness import (
    LINK,
    AppendSpy,
    Shadow,
    base_offsets,
    caught_up,
    close_shadow,
    eventually,
    link_doc,
    open_shadow,
    status_of,
)

from umbra.admin.metrics import BrokerMetrics
from umbra.client.admin import AclBinding as SourceAcl
from umbra.records.records import build_batch
from umbra.security.acls import AclBinding, AclOperation, PatternType, PermissionType, ResourceType
from umbra.server.broker import Broker
from umbra.shadow import engine as engine_module
from umbra.shadow.link import _metrics_for
from umbra.shadow.manager import ShadowTopicReadOnly
from umbra.shadow.state import LinkState


def values(label: str, count: int) -> list[bytes]:
    return [f"{label}-{i}".encode() * 4 for i in range(count)]


def produce_here(shadow: Shadow, topic: str, count: int) -> int:
    """Produce to the shadow broker's topic as the Produce handler does (the broker's write check, then an append
    through the leader partition, which moves the high watermark); returns the base offset the records got."""
    broker = shadow.broker
    broker.check_writable(broker.metadata.require_topic(topic))
    now = int(time.time() * 1000)
    batch = build_batch([(b"here", v, [], now) for v in values("here", count)])
    return broker.replicas.leader_partition(topic, 0).append_as_leader(batch, now).base_offset


async def topic_syncs(shadow: Shadow, count: int = 2) -> None:
    """Wait until the link's topic syncer (which creates replicators for the shadow topics it finds) has run
    ``count`` more times."""
    for _ in range(count):
        since = int(time.time() * 1000)

        def ran(since: int = since) -> bool:
            task = next(t for t in shadow.manager.status(LINK)["tasks"] if t["task"] == "topic-sync")
            return task["last_run_ms"] is not None and task["last_run_ms"] > since

        await eventually(ran, "a topic sync")


ORDERS, ORDERS_1 = ("orders", 0), ("orders", 1)


@contextlib.asynccontextmanager
async def failed_over_with_appends_in_flight(tmp_path: Path
                                             ) -> AsyncIterator[tuple[FakeSource, Shadow, dict[int, AppendSpy]]]:
    """A link replicating ``orders`` (partition 0 led by source broker 1, partition 1 by broker 2: two fetch loops
    sharing one writer thread, as partitions do once a link has more of them than writer threads) is failed over with appends in flight: partition 0's append of offsets
    10-13 under way on the writer thread (held there by the spy until the failover was requested), partition 1's
    append of its 10-13 queued behind it, and partition 0's 14-17 fetched by the pipelined Fetch. Yields the
    spies by partition once the topic is FAILED_OVER."""
    source = FakeSource(tmp_path / "source")
    source.create_topic(ORDERS[0], 2, leaders=(1, 2))
    for tp in (ORDERS, ORDERS_1):
        source.produce(*tp, values("a", 10))
    writer_threads = engine_module.WRITER_THREADS
    engine_module.WRITER_THREADS = 1  # the engine is made when the link is created, below
    shadow = await open_shadow(tmp_path / "shadow", source)
    spies: dict[int, AppendSpy] = {}
    try:
        try:
            await shadow.manager.create(link_doc())
        finally:
            engine_module.WRITER_THREADS = writer_threads
        for tp in (ORDERS, ORDERS_1):
            await caught_up(shadow, source, *tp)
        with pytest.raises(ShadowTopicReadOnly):
            produce_here(shadow, ORDERS[0], 1)
        spies = {tp[1]: AppendSpy(shadow.broker, shadow.log(*tp)) for tp in (ORDERS, ORDERS_1)}
        spies[0].hold()
        source.produce(*ORDERS, values("b", 4))
        await eventually(spies[0].held.is_set, "partition 0's append of 10-13 held on the writer thread")
        source.produce(*ORDERS_1, values("b", 4))
        # Broker 2's loop sends its next Fetch before it hands the batches to the writer thread and waits.
        await eventually(lambda: any(fetch.get(ORDERS_1) == 14 for fetch in source.fetches),
                         "partition 1's 10-13 handed to the writer thread")
        source.produce(*ORDERS, values("c", 4))
        await eventually(lambda: any(a.get(ORDERS, (0, 0))[0] == 14 and a[ORDERS][1] > 0 for a in source.answered),
                         "partition 0's 14-17 fetched by the pipelined Fetch")

        await shadow.manager.failover(LINK, [ORDERS[0]])
        assert shadow.topic_state(ORDERS[0]) == "FAILING_OVER"
        assert shadow.replicator(*ORDERS) is None and shadow.replicator(*ORDERS_1) is None  # fenced at once
        for _ in range(20):  # yields, not a wait: every ready task runs, the failover's included
            await asyncio.sleep(0)
        assert shadow.topic_state(ORDERS[0]) == "FAILING_OVER", "failed over with an append still under way"
        spies[0].release()
        await eventually(lambda: shadow.topic_state(ORDERS[0]) == "FAILED_OVER",
                         lambda: f"{ORDERS[0]} FAILED_OVER, now {shadow.topic_state(ORDERS[0])}")
        yield source, shadow, spies
    finally:
        for spy in spies.values():
            spy.release()
        await close_shadow(shadow)
        source.close()


def test_failover_with_appends_in_flight_never_appends_after_failed_over_and_writes_go_on_at_the_next_offset(
        tmp_path: Path) -> None:
    async def main() -> None:
        async with failed_over_with_appends_in_flight(tmp_path) as (source, shadow, spies):
            fetches_at_failover = len(source.fetches)
            # The append under way landed before the topic became FAILED_OVER; the queued one and the batches
            # fetched after the fence never did: no append began after the fence, none ended after FAILED_OVER.
            assert shadow.log(*ORDERS).log_end_offset == 14 and shadow.log(*ORDERS_1).log_end_offset == 10
            assert spies[0].calls[-1] == ("ACTIVE", "FAILING_OVER", 10), spies[0].calls
            for spy in spies.values():
                assert all(before == "ACTIVE" and after != "FAILED_OVER" for before, after, _ in spy.calls), spy.calls
            calls_at_failover = {p: len(spy.calls) for p, spy in spies.items()}

            # An ordinary topic now: writes go on at the next offset, while the source goes on too.
            assert produce_here(shadow, ORDERS[0], 3) == 14
            for tp in (ORDERS, ORDERS_1):
                source.produce(*tp, values("d", 4))
            await topic_syncs(shadow)
            assert {p: len(spy.calls) for p, spy in spies.items()} == calls_at_failover
            assert not any(ORDERS in fetch or ORDERS_1 in fetch for fetch in source.fetches[fetches_at_failover:])
            log = shadow.log(*ORDERS)
            assert (log.log_end_offset, log.high_watermark) == (17, 17) and base_offsets(log)[-1] == 14
            assert source.log(ORDERS).high_watermark == 22
            for tp in (ORDERS, ORDERS_1):
                status = status_of(shadow, *tp)
                assert status is not None and status["state"] == "FAILED_OVER", status

    asyncio.run(main())


def test_the_append_that_landed_while_failing_over_is_visible_once_failed_over(tmp_path: Path) -> None:
    async def main() -> None:
        async with failed_over_with_appends_in_flight(tmp_path) as (_source, shadow, _spies):
            log = shadow.log(*ORDERS)
            assert log.log_end_offset == 14
            assert log.high_watermark == 14, f"high watermark {log.high_watermark}, log end {log.log_end_offset}"
            status = status_of(shadow, *ORDERS)
            assert status is not None and status["shadow_high_watermark"] == 14, status

    asyncio.run(main())


@pytest.mark.parametrize("scope", ["link", "topic"])
def test_a_restart_while_failing_over_completes_the_failover_and_does_not_resume_replication(
        tmp_path: Path, scope: str) -> None:
    """``link``: the whole link fails over (the link is FAILING_OVER too); ``topic``: topic ``a`` only, and ``b``
    replicates on after the restart."""
    failing = ["a", "b"] if scope == "link" else ["a"]

    async def main() -> None:
        source = FakeSource(tmp_path / "source")
        for topic in ("a", "b"):
            source.create_topic(topic, 1)
            source.produce(topic, 0, values(topic, 10))
        shadow = await open_shadow(tmp_path / "shadow", source)
        try:
            await shadow.manager.create(link_doc())
            await caught_up(shadow, source, "a")
            await caught_up(shadow, source, "b")
            await shadow.manager.failover(LINK, None if scope == "link" else ["a"])
        finally:
            # Stopped before the failover task ever ran (nothing awaited in between): the broker went down in
            # the middle of failing over.
            await close_shadow(shadow)

        for topic in ("a", "b"):  # the source goes on while the shadow is down
            source.produce(topic, 0, values(f"{topic}-later", 6))
        stored: dict[str, str] = {}
        spies: dict[str, AppendSpy] = {}

        def before_start(broker: Broker) -> None:
            for topic in ("a", "b"):
                entry = broker.metadata.shadow_topic(topic)
                assert entry is not None
                stored[topic] = entry["state"]
                log = broker.logs.get(topic, 0)
                assert log is not None
                spies[topic] = AppendSpy(broker, log)
            stored["link"] = broker.metadata.shadow_links()[LINK]["state"]

        fetches_at_restart = len(source.fetches)
        shadow = await open_shadow(tmp_path / "shadow", source, before_start)
        try:
            assert stored == {"a": "FAILING_OVER", "b": "FAILING_OVER" if scope == "link" else "ACTIVE",
                              "link": "FAILING_OVER" if scope == "link" else "ACTIVE"}
            await eventually(lambda: all(shadow.topic_state(t) == "FAILED_OVER" for t in failing),
                             lambda: f"{failing} FAILED_OVER: {[shadow.topic_state(t) for t in failing]}")
            if scope == "link":
                await eventually(lambda: shadow.link.state is LinkState.FAILED_OVER, "the link FAILED_OVER")
                record = shadow.manager.record(LINK)
                assert record is not None and record.state is LinkState.FAILED_OVER
            else:
                await caught_up(shadow, source, "b")  # the link runs, and the topic not failing over replicates on
                assert shadow.link.state is LinkState.ACTIVE and shadow.topic_state("b") == "ACTIVE"
                assert spies["b"].calls and shadow.log("b").high_watermark == 16
            await topic_syncs(shadow)

            for topic in failing:
                assert spies[topic].calls == [], f"{topic}: replication resumed after the restart"
                assert shadow.replicator(topic) is None
                assert not any((topic, 0) in fetch for fetch in source.fetches[fetches_at_restart:])
                assert shadow.log(topic).log_end_offset == 10 and source.log((topic, 0)).high_watermark == 16
                assert produce_here(shadow, topic, 2) == 10
        finally:
            await close_shadow(shadow)
            source.close()

    asyncio.run(main())


def test_a_broker_built_again_in_process_counts_shadow_metrics_in_its_own_registry() -> None:
    labels = {"link": LINK, "topic": "t", "partition": "0"}
    for _ in range(50):  # CPython reuses a freed object's id often, not every time
        registry = BrokerMetrics().registry
        _metrics_for(registry).gaps.labels(LINK, "t", "0").inc()
        assert registry.get_sample_value("umbra_shadow_retention_gaps_total", labels) == 1.0
        del registry
        gc.collect()


def _source_acl(name: str, principal: str, pattern: PatternType = PatternType.LITERAL) -> SourceAcl:
    return SourceAcl(int(ResourceType.TOPIC), name, int(pattern), principal, "*", int(AclOperation.READ),
                     int(PermissionType.ALLOW))


def _here(acl: SourceAcl) -> AclBinding:
    return AclBinding.from_codes(*acl)


def test_an_acl_revoked_on_the_source_while_paused_is_revoked_after_resume_and_the_shadows_own_acls_stay(
        tmp_path: Path) -> None:
    async def main() -> None:
        source = FakeSource(tmp_path / "source")
        source.create_topic("acl-a", 1)
        own = _source_acl("acl-a", "User:carol")  # the shadow cluster's own ACL; the source has it too
        revoked = _source_acl("acl-a", "User:paused")
        prefixed = _source_acl("acl-", "User:bob", PatternType.PREFIXED)
        unselected = _source_acl("payments", "User:eve")  # on a topic the link does not shadow
        source.acls = [own, revoked, prefixed, unselected]
        shadow = await open_shadow(tmp_path / "shadow", source)
        store = shadow.broker.acls
        try:
            assert store.add([_here(own)]) == [None]
            await shadow.manager.create(link_doc(("acl-",), acls=True))
            mirrored = {_here(own), _here(revoked), _here(prefixed)}
            await eventually(lambda: set(store.all()) == mirrored, lambda: f"the source's ACLs here: {store.all()}")
            record = shadow.manager.record(LINK)
            assert record is not None and record.created_acls == {_here(revoked), _here(prefixed)}

            await shadow.manager.pause(LINK)
            assert shadow.link.syncers == [] and shadow.link.source is None  # nothing syncs while paused
            record = shadow.manager.record(LINK)
            assert record is not None and record.state is LinkState.PAUSED
            assert record.created_acls == {_here(revoked), _here(prefixed)}  # the pause kept what it created
            source.acls.remove(revoked)
            assert set(store.all()) == mirrored

            await shadow.manager.resume(LINK)
            await eventually(lambda: set(store.all()) == {_here(own), _here(prefixed)},
                             lambda: f"revoked while paused, gone after resume: {store.all()}")
            record = shadow.manager.record(LINK)
            assert record is not None and record.created_acls == {_here(prefixed)}

            # The source drops the ACL the shadow had of its own: a whole sync later, the shadow still has it.
            source.acls.remove(own)
            calls = source.calls["DescribeAcls"]
            await eventually(lambda: source.calls["DescribeAcls"] >= calls + 2, "an ACL sync after the revocation")
            assert set(store.all()) == {_here(own), _here(prefixed)}
            task = next(t for t in shadow.manager.status(LINK)["tasks"] if t["task"] == "acl-sync")
            assert task["state"] == "ACTIVE", task
        finally:
            await close_shadow(shadow)
            source.close()

    asyncio.run(main())
