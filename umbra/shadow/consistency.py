"""Keeping each shadow partition a prefix of its source: start-point checks, divergence, truncation.

A partition replicates on only from a point the source agrees with. Where that point is checked:

- at every *start point*: when a replicator starts, when the source's leader epoch changes, after an
  answer that can mean the source lost or replaced data (``OFFSET_OUT_OF_RANGE`` with the shadow ahead,
  ``UNKNOWN_TOPIC_OR_PARTITION``...), and after a truncation;
- in every Fetch (v12+), where the source answers a ``last_fetched_epoch`` that ended earlier on its side
  with a diverging epoch (KIP-595).

How it is checked depends on what the source can say (see :mod:`umbra.shadow.divergence`): by leader epoch
(OffsetForLeaderEpoch, Kafka's follower rule), or by batch CRC. Where the logs part, the shadow truncates to
the end of their common history and replicates on. Where it cannot follow, the partition goes ``FAULTED``
with the reason, and its data stays: a source with no history in common (a recreated topic: the whole topic
is faulted), a source without leader epochs whose log ends before the shadow's, or a divergence before the
shadow's log start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from umbra.client import versions as api
from umbra.client.errors import ClientError
from umbra.shadow.divergence import diverges, find_common_end, truncation_offset
from umbra.shadow.startpoint import StartPoint, check_start_points
from umbra.shadow.state import TaskState

if TYPE_CHECKING:
    from umbra.client.capabilities import SourceCapabilities
    from umbra.shadow.engine import ReplicationEngine
    from umbra.shadow.replicator import PartitionReplicator


class Consistency:
    """The start-point checks and truncations of one link's replicators (owned by its engine)."""

    def __init__(self, engine: ReplicationEngine) -> None:
        self.engine = engine
        self.link = engine.link
        self.source = engine.source

    # --- start points ---------------------------------------------------------------------------
    async def check(self, reps: list[PartitionReplicator], capabilities: SourceCapabilities) -> None:
        """Check each replicator's end against the source; those found consistent get ``verified``."""
        without_ids = capabilities.topic_ids is False
        by_crc = [rep for rep in reps if capabilities.leader_epochs is False or without_ids or rep.suspect
                  or (rep.source_epochs.latest_epoch < 0 and rep.log.log_end_offset > rep.log.log_start_offset)]
        if by_crc:
            await self._check_by_crc(by_crc)
        epochs = capabilities.leader_epochs is True and await self.source.supports(api.OFFSET_FOR_LEADER_EPOCH)
        # By epoch too, where the source has epochs and the shadow knows its batches' (a CRC check that
        # passed does not say where the source's epoch ends).
        by_epoch = [rep for rep in reps if epochs and rep.source_epochs.latest_epoch >= 0
                    and rep.state is not TaskState.FAULTED and (rep not in by_crc or rep.verified)]
        for rep in by_epoch:
            rep.verified = False
        if by_epoch:
            await self._check_by_epoch(by_epoch)
        for rep in reps:
            if rep not in by_crc and rep not in by_epoch:
                rep.verified = True  # a new, empty or epoch-less partition of a source with epochs and ids

    async def _check_by_crc(self, reps: list[PartitionReplicator]) -> None:
        results = await check_start_points(self.source, [(rep.tp, rep.log) for rep in reps])
        for rep in reps:
            verdict = results[rep.tp]
            self._count(rep, verdict.outcome.value)
            if verdict.outcome is StartPoint.UNKNOWN:
                rep.set_state(TaskState.LINK_UNAVAILABLE, f"cannot check the shadow's end against the source: "
                                                          f"{verdict.detail}")
            elif verdict.outcome is StartPoint.MATCH:
                rep.verified, rep.suspect = True, False
            else:
                await self._find_common_end(rep, verdict.detail)

    async def _find_common_end(self, rep: PartitionReplicator, detail: str) -> None:
        try:
            common = await find_common_end(self.source, rep.tp, rep.log)
        except (LookupError, ClientError, OSError, TimeoutError) as exc:
            rep.set_state(TaskState.LINK_UNAVAILABLE, f"diverged from the source ({detail}); cannot find where: "
                                                      f"{exc or type(exc).__name__}")
            return
        if common.offset is None:
            self.cannot_follow(rep, f"diverged from the source: {detail}; {common.detail} (recreated topic?)",
                               whole_topic=True)
        elif common.offset >= common.source_high_watermark:
            self.cannot_follow(rep, f"the source is behind the shadow: its log ends at {common.source_high_watermark}"
                                    f", the shadow's at {rep.log.log_end_offset} ({detail}); without leader epochs "
                                    f"the shadow cannot tell lost data from replaced data, so it keeps its own")
        else:
            await self.truncate(rep, common.offset, f"its last batches differ from the source's ({detail}); "
                                                    f"{common.detail}")

    async def _check_by_epoch(self, reps: list[PartitionReplicator]) -> None:
        asked = {rep.tp: rep.source_epochs.latest_epoch for rep in reps}
        try:
            answers = await self.source.offsets_for_leader_epochs(asked)
        except (ClientError, OSError, TimeoutError) as exc:
            for rep in reps:
                rep.set_state(TaskState.LINK_UNAVAILABLE, f"OffsetForLeaderEpoch failed: {exc or type(exc).__name__}")
            return
        for rep in reps:
            answer = answers.get(rep.tp)
            if answer is None or answer.error_code:
                code = "no answer" if answer is None else f"error {answer.error_code}"
                rep.set_state(TaskState.LINK_UNAVAILABLE, f"OffsetForLeaderEpoch for {asked[rep.tp]}: {code}")
                continue
            if answer.end_offset < 0:  # the source knows nothing of that epoch: fall back to batch CRCs
                rep.suspect = True
                continue
            end = rep.log.log_end_offset
            if not diverges(answer.leader_epoch, answer.end_offset, asked[rep.tp], end):
                self._count(rep, StartPoint.MATCH.value)
                rep.verified, rep.suspect = True, False
                continue
            self._count(rep, StartPoint.DIVERGED.value)
            await self.resolve(rep, answer.leader_epoch, answer.end_offset, "OffsetForLeaderEpoch")

    def _count(self, rep: PartitionReplicator, outcome: str) -> None:
        rep.start_point_check = outcome
        self.engine.start_point_checks[outcome] += 1

    # --- divergence -------------------------------------------------------------------------------
    async def resolve(self, rep: PartitionReplicator, source_epoch: int, source_end: int, via: str) -> None:
        """The source says its epoch ``source_epoch`` ends at ``source_end``: truncate where the logs part."""
        if rep.stopped:
            return
        end = rep.log.log_end_offset
        target = truncation_offset(source_epoch, source_end, list(rep.source_epochs.entries), end)
        said = f"the source's epoch {source_epoch} ends at {source_end} ({via})"
        if target >= end:
            rep.verified = False  # nothing of the shadow's is past that point: check again and go on
        elif target <= rep.log.log_start_offset:  # nothing in common: never empty a shadow partition
            self.cannot_follow(rep, f"diverged from the source before the shadow's log start "
                                    f"{rep.log.log_start_offset}: {said}")
            return
        else:
            await self.truncate(rep, target, said)
            return
        self.engine.request_reroute()

    async def truncate(self, rep: PartitionReplicator, offset: int, why: str) -> None:
        """Truncate the shadow partition to ``offset`` (on its writer thread, after its appends), and
        say so: counted, logged, in status and metrics. It is checked again before it replicates on."""
        before = rep.log.log_end_offset
        done = await asyncio.get_running_loop().run_in_executor(self.engine.writer_for(rep.tp), _truncate_on_thread,
                                                                   rep, offset)
        if not done:
            return  # fenced (failed over) meanwhile: a failed-over topic is never truncated
        after = rep.log.log_end_offset
        lost = max(before - after, 0)
        rep.truncations += 1
        rep.truncated_records += lost
        rep.last_truncation = {"from_offset": before, "to_offset": after, "records": lost,
                               "time_ms": int(time.time() * 1000), "reason": why}
        rep.append_position = after
        rep.verified = False
        link, name = self.link, f"{rep.tp[0]}-{rep.tp[1]}"
        link.metrics.truncations.labels(link.spec.name, rep.tp[0], str(rep.tp[1])).inc()
        link.metrics.truncated_records.labels(link.spec.name, rep.tp[0], str(rep.tp[1])).inc(lost)
        link.record_event(f"{name}: diverged from the source, {why}; truncated the shadow from offset {before} to "
                          f"{after} ({lost} records)", logging.WARNING)
        link.broker.notifier.notify(rep.tp)
        self.engine.request_reroute()

    def cannot_follow(self, rep: PartitionReplicator, reason: str, *, whole_topic: bool = False) -> None:
        """The partition (or its whole topic) can no longer follow the source: FAULTED, data kept."""
        self.engine.detach(rep)
        rep.verified = False
        rep.set_state(TaskState.FAULTED, reason)
        self.link.metrics.errors.labels(self.link.spec.name, "DIVERGED").inc()
        self.link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: {reason}", logging.ERROR)
        if whole_topic:
            self.link.fault_topic(rep.tp[0], f"partition {rep.tp[1]}: {reason}")


def _truncate_on_thread(rep: PartitionReplicator, offset: int) -> bool:
    if rep.stopped:
        return False
    rep.log.truncate_to(offset)
    if rep.source_epochs.truncate_from_end(rep.log.log_end_offset):
        rep.source_epochs.persist()
    return True
