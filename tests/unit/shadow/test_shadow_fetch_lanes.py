"""A far source: the fetch loop spreads its partitions over several fetch sessions, moves them between
sessions while data flows, goes back to one session once caught up, and the shadow ends batch-equal to the
source, with no gap and no duplicate.

The fake source answers at once; its fetchers report a 50 ms round trip (``FakeSource.round_trip_s``), which
is what makes the loop plan several sessions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_source import FakeSource
from shadow_harness import Shadow, base_offsets, batch_images, close_shadow, eventually, link_doc, open_shadow

from umbra.client.fetcher import MAX_FETCHES_IN_FLIGHT
from umbra.shadow.replicator import SourceFetchLoop

TOPIC, PARTITIONS = "far", 6


def values(label: str, count: int) -> list[bytes]:
    return [f"{label}-{i}".encode() * 4 for i in range(count)]


def loop_of(shadow: Shadow) -> SourceFetchLoop | None:
    engine = shadow.link.engine
    entry = None if engine is None else engine.loops.get(1)
    return None if entry is None else entry[0]


def all_caught_up(shadow: Shadow, source: FakeSource) -> bool:
    for p in range(PARTITIONS):
        log = shadow.broker.logs.get(TOPIC, p)
        if log is None or log.high_watermark != source.log((TOPIC, p)).high_watermark:
            return False
    return True


def assert_equal_to_source(shadow: Shadow, source: FakeSource) -> None:
    for p in range(PARTITIONS):
        shadow_log, source_log = shadow.log(TOPIC, p), source.log((TOPIC, p))
        offsets = base_offsets(shadow_log)
        assert offsets == sorted(set(offsets)), f"partition {p}: batches out of order or twice: {offsets}"
        assert batch_images(shadow_log) == batch_images(source_log), f"partition {p} differs from the source"


def test_a_far_source_is_fetched_over_several_sessions_and_the_shadow_ends_equal_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SourceFetchLoop, "PLAN_INTERVAL_S", 0.0)  # plan after every response
    monkeypatch.setattr(SourceFetchLoop, "CAUGHT_UP_AFTER_S", 0.3)

    async def main() -> None:
        source = FakeSource(tmp_path / "source")
        source.round_trip_s = 0.05
        source.create_topic(TOPIC, PARTITIONS)
        for p in range(PARTITIONS):
            source.produce(TOPIC, p, values(f"a{p}", 400))
        shadow = await open_shadow(tmp_path / "shadow", source)
        try:
            doc = link_doc()
            # Small responses: the catch-up takes many fetches, and the rate seen makes 512 bytes a small share
            # of the bandwidth-delay product.
            doc["source"]["client"].update(fetch_max_bytes=2048, fetch_partition_max_bytes=512)
            await shadow.manager.create(doc)
            loop = await eventually(lambda: loop_of(shadow), "the fetch loop of source broker 1")
            lanes = min(MAX_FETCHES_IN_FLIGHT, PARTITIONS)  # at most one session per partition
            await eventually(lambda: loop.in_flight.fetches == lanes, lambda: f"{lanes} fetch sessions, now {loop.status()}")
            # One partition may fill a session's request: the per-partition cap follows the plan's size.
            assert loop.fetcher.settings.fetch_partition_max_bytes == max(512, loop.in_flight.max_bytes)
            # More data while the partitions are spread (and being moved) over the sessions.
            for p in range(PARTITIONS):
                source.produce(TOPIC, p, values(f"b{p}", 200))
            await eventually(lambda: all_caught_up(shadow, source), lambda: f"caught up: {loop.status()}",
                             timeout_s=30)
            assert_equal_to_source(shadow, source)
            status = loop.status()
            assert status["round_trip_ms"] == 50.0, status
            fetchers = [f for f in source.clients[-1].fetchers if f.broker_id == 1]
            assert len(fetchers) == lanes and all(f.records_fetched for f in fetchers), \
                [(f.records_fetched, f.partitions) for f in fetchers]

            # Caught up: back to one session; the others' connections are closed.
            await eventually(lambda: loop.in_flight.fetches == 1, lambda: f"one fetch session: {loop.status()}")
            assert loop.fetcher.settings.fetch_partition_max_bytes == 512  # the spec's again
            await eventually(lambda: sum(f.closed for f in fetchers) == len(fetchers) - 1,
                             lambda: f"every fetcher but the first closed: {[f.closed for f in fetchers]}")
            assert not loop.fetcher.closed  # type: ignore[attr-defined]
            assert len(loop.fetcher.partitions) == PARTITIONS
            for p in range(PARTITIONS):
                source.produce(TOPIC, p, values(f"c{p}", 10))
            await eventually(lambda: all_caught_up(shadow, source), lambda: f"caught up again: {loop.status()}")
            assert_equal_to_source(shadow, source)
        finally:
            await close_shadow(shadow)
            source.close()

    asyncio.run(main())


def test_a_near_source_keeps_one_fetch_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SourceFetchLoop, "PLAN_INTERVAL_S", 0.0)

    async def main() -> None:
        source = FakeSource(tmp_path / "source")
        source.round_trip_s = 0.0001
        source.create_topic(TOPIC, PARTITIONS)
        for p in range(PARTITIONS):
            source.produce(TOPIC, p, values(f"a{p}", 200))
        shadow = await open_shadow(tmp_path / "shadow", source)
        try:
            await shadow.manager.create(link_doc())
            loop = await eventually(lambda: loop_of(shadow), "the fetch loop of source broker 1")
            await eventually(lambda: all_caught_up(shadow, source), lambda: f"caught up: {loop.status()}")
            assert_equal_to_source(shadow, source)
            assert loop.in_flight.fetches == 1
            assert [f.broker_id for f in source.clients[-1].fetchers] == [1]
        finally:
            await close_shadow(shadow)
            source.close()

    asyncio.run(main())
