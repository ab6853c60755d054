"""Replication against a fake source: the gap after source retention, a source behind the shadow, divergence.

Each test runs a real shadow link (manager, link, engine, fetch loops, writer thread, real umbra storage) against
:class:`fake_source.FakeSource`, whose partitions are real umbra logs too, so "byte-equal" is checked batch by
batch (the partition leader epoch masked: the shadow stamps its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from fake_source import EPOCHS_WITHOUT_DIVERGING_EPOCH_VERSIONS, NO_EPOCH_VERSIONS, FakeSource
from shadow_harness import (
    LINK,
    Shadow,
    base_offsets,
    batch_images,
    caught_up,
    close_shadow,
    eventually,
    link_doc,
    open_shadow,
    status_of,
)

from umbra.shadow.state import TaskState

TP = ("t", 0)


def values(label: str, count: int) -> list[bytes]:
    return [f"{label}-{i}".encode() * 4 for i in range(count)]


def run(tmp_path: Path, scenario: Callable[[FakeSource, Shadow], Awaitable[None]], **source_options: object) -> None:
    """Run ``scenario`` with a fake source (topic ``t``, one partition) and a shadow broker, both closed after."""
    async def main() -> None:
        source = FakeSource(tmp_path / "source", **source_options)  # type: ignore[arg-type]
        source.create_topic(TP[0], 1)
        shadow = await open_shadow(tmp_path / "shadow", source)
        try:
            await scenario(source, shadow)
        finally:
            await close_shadow(shadow)
            source.close()

    asyncio.run(main())


def test_a_gap_left_by_source_retention_is_counted_and_replication_jumps_to_the_source_log_start(
        tmp_path: Path) -> None:
    async def scenario(source: FakeSource, shadow: Shadow) -> None:
        source.produce(*TP, values("a", 10))
        await shadow.manager.create(link_doc())
        await caught_up(shadow, source, *TP)
        # While the link is paused the source takes 20 more records and its retention removes 10 the shadow
        # never got: offsets 10-19.
        await shadow.manager.pause(LINK)
        source.produce(*TP, values("b", 20))
        source.delete_records(TP, 20)
        fetches_before = len(source.fetches)
        await shadow.manager.resume(LINK)
        await caught_up(shadow, source, *TP)
        log = shadow.log(*TP)
        await eventually(lambda: log.log_start_offset == 20, lambda: f"shadow log start {log.log_start_offset}")

        rep = shadow.replicator(*TP)
        assert rep is not None and (rep.gaps, rep.skipped_records) == (1, 10)
        status = status_of(shadow, *TP)
        assert status is not None and (status["gaps"], status["skipped_records"]) == (1, 10), status
        assert status["state"] == "ACTIVE" and status["source_log_start_offset"] == 20, status
        gaps = shadow.broker.metrics.registry.get_sample_value(
            "umbra_shadow_retention_gaps_total", {"link": LINK, "topic": TP[0], "partition": str(TP[1])})
        assert gaps == 1.0
        # Asked at 10, told OFFSET_OUT_OF_RANGE, then asked at the source's log start: nothing in between.
        asked = [fetch[TP] for fetch in source.fetches[fetches_before:] if TP in fetch]
        assert asked[0] == 10 and 20 in asked and not any(10 < offset < 20 for offset in asked), asked
        # Nothing invented: the shadow holds exactly the source's batches from 20 on, at the source's offsets.
        assert base_offsets(log)[0] == 20 and log.high_watermark == 30
        assert batch_images(log) == batch_images(source.log(TP))

    run(tmp_path, scenario)


def test_a_source_without_epochs_that_ends_before_the_shadow_faults_the_partition_and_keeps_its_data(
        tmp_path: Path) -> None:
    async def scenario(source: FakeSource, shadow: Shadow) -> None:
        source.produce(*TP, values("a", 10))
        await shadow.manager.create(link_doc())
        await caught_up(shadow, source, *TP)
        log = shadow.log(*TP)
        kept = batch_images(log)
        assert len(kept) == 5

        source.lose_tail(TP, 6)  # the source's log now ends at 6, the shadow's at 10
        await eventually(lambda: (rep := shadow.replicator(*TP)) is not None and rep.state is TaskState.FAULTED,
                         lambda: f"{TP} FAULTED: {status_of(shadow, *TP)}")
        status = status_of(shadow, *TP)
        assert status is not None and status["state"] == "FAULTED", status
        assert "the source is behind the shadow: its log ends at 6, the shadow's at 10" in status["reason"], status
        assert "keeps its own" in status["reason"], status
        assert status["truncations"] == 0 and status["start_point_check"] == "diverged", status
        assert any("the source is behind the shadow" in e["event"] for e in shadow.link.events)

        # The source writes on past the shadow's end: the partition stays FAULTED and nothing is appended.
        source.produce(*TP, values("b", 8))
        metadata_calls = source.calls["Metadata"]
        await eventually(lambda: source.calls["Metadata"] >= metadata_calls + 3, "three more metadata refreshes")
        assert shadow.replicator(*TP).state is TaskState.FAULTED  # type: ignore[union-attr]
        assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 10, 10)
        assert batch_images(log) == kept

    run(tmp_path, scenario, versions=NO_EPOCH_VERSIONS)


# How the divergence is found, for each kind of source and moment; what the truncation's reason says.
DIVERGENCE_CASES = {
    # A current Kafka: the Fetch naming the old epoch is fenced, the partition re-routed, the divergence found
    # (by the Fetch's diverging epoch or OffsetForLeaderEpoch).
    "running, fenced": ({}, False, "the source's epoch 0 ends at 14 ("),
    # Fetch v12+ from a source that does not fence the stale epoch: the Fetch answers a diverging epoch (KIP-595).
    "running, Fetch diverging epoch": ({"fence_leader_epochs": False}, False,
                                       "the source's epoch 0 ends at 14 (Fetch)"),
    # A start point (resume): OffsetForLeaderEpoch for the shadow's last source epoch.
    "at resume, OffsetForLeaderEpoch": ({}, True, "the source's epoch 0 ends at 14 (OffsetForLeaderEpoch)"),
    # No epochs at all: the CRC check at the start point, then the binary search for the common end.
    "at resume, batch CRCs": ({"versions": NO_EPOCH_VERSIONS}, True, "the shadow and the source agree up to offset 14"),
    # Leader epochs but Fetch < v12: the fetch is fenced (FENCED_LEADER_EPOCH), and the new epoch is a start
    # point that OffsetForLeaderEpoch must check.
    "running, fenced, Fetch v11": ({"versions": EPOCHS_WITHOUT_DIVERGING_EPOCH_VERSIONS}, False,
                                   "the source's epoch 0 ends at 14 (OffsetForLeaderEpoch)"),
}


@pytest.mark.parametrize(("source_options", "paused", "reason"), list(DIVERGENCE_CASES.values()),
                         ids=list(DIVERGENCE_CASES))
def test_a_diverged_source_tail_is_truncated_counted_and_the_shadow_ends_equal_to_the_source(
        tmp_path: Path, source_options: dict[str, object], paused: bool, reason: str) -> None:
    async def scenario(source: FakeSource, shadow: Shadow) -> None:
        source.produce(*TP, values("first", 20))
        await shadow.manager.create(link_doc())
        await caught_up(shadow, source, *TP)
        if paused:
            await shadow.manager.pause(LINK)
        # The source loses offsets 14-19 and, at a new leader epoch, takes other records at those offsets and on.
        source.lose_tail(TP, 14)
        source.produce(*TP, values("second", 10))
        if paused:
            await shadow.manager.resume(LINK)
        await caught_up(shadow, source, *TP)

        log = shadow.log(*TP)
        assert (log.log_start_offset, log.high_watermark) == (0, 24)
        assert batch_images(log) == batch_images(source.log(TP)), "the shadow kept records the source replaced"
        status = status_of(shadow, *TP)
        assert status is not None and status["state"] == "ACTIVE", status
        assert (status["truncations"], status["truncated_records"]) == (1, 6), status
        truncation = status["last_truncation"]
        assert (truncation["from_offset"], truncation["to_offset"], truncation["records"]) == (20, 14, 6), truncation
        assert reason in truncation["reason"], truncation
        labels = {"link": LINK, "topic": TP[0], "partition": str(TP[1])}
        registry = shadow.broker.metrics.registry
        assert registry.get_sample_value("umbra_shadow_truncations_total", labels) == 1.0
        assert registry.get_sample_value("umbra_shadow_truncated_records_total", labels) == 6.0

    run(tmp_path, scenario, **source_options)
