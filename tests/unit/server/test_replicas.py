"""The replica manager: the one place that checks leadership and epochs, stamps appends and moves the HW."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from umbra.cluster.metadata import TopicMetadata
from umbra.errors import ErrorCode, KafkaError
from umbra.records.batch import validate_record_set
from umbra.records.records import build_batch
from umbra.server.replicas import FETCHED_RECENTLY_MS, Partition, PartitionState, ReplicaManager
from umbra.storage.config import LogConfig
from umbra.storage.log import Log

EPOCH = 7


def manager(tmp_path: Path, topics: dict[str, int], logs: dict[tuple[str, int], Log]) -> ReplicaManager:
    metas = {name: TopicMetadata(name, uuid.uuid4(), count) for name, count in topics.items()}

    def open_log(topic: str, index: int) -> Log:
        key = (topic, index)
        if key not in logs:
            logs[key] = Log.open(tmp_path / f"{topic}-{index}-{len(logs)}", topic, index, LogConfig())
        return logs[key]

    return ReplicaManager(1, EPOCH, metas.get, open_log)


def code(exc: pytest.ExceptionInfo[KafkaError]) -> ErrorCode:
    return exc.value.code


def test_errors_for_unknown_partitions_and_epochs(tmp_path: Path) -> None:
    replicas = manager(tmp_path, {"t": 2}, {})
    with pytest.raises(KafkaError) as unknown:
        replicas.leader_partition("t", 2)
    assert code(unknown) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    with pytest.raises(KafkaError) as missing:
        replicas.leader_partition("nope", 0)
    assert code(missing) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    with pytest.raises(KafkaError) as fenced:
        replicas.leader_partition("t", 0, EPOCH - 1)
    assert code(fenced) is ErrorCode.FENCED_LEADER_EPOCH
    with pytest.raises(KafkaError) as ahead:
        replicas.leader_partition("t", 0, EPOCH + 1)
    assert code(ahead) is ErrorCode.UNKNOWN_LEADER_EPOCH
    assert replicas.leader_partition("t", 0, EPOCH).leader_epoch == EPOCH
    assert replicas.leader_partition("t", 1, -1).index == 1


def test_appends_stamp_the_epoch_and_move_the_high_watermark(tmp_path: Path) -> None:
    logs: dict[tuple[str, int], Log] = {}
    replicas = manager(tmp_path, {"t": 1}, logs)
    partition = replicas.leader_partition("t", 0)
    result = partition.append_as_leader(build_batch([(b"k", b"v", [], 1_000)] * 3), now_ms=1_000)
    assert (result.base_offset, result.last_offset) == (0, 2)
    assert partition.log.high_watermark == 3
    [header] = validate_record_set(partition.log.read(0, 1 << 20))
    assert header.partition_leader_epoch == EPOCH
    state = replicas.state("t", 0)
    assert (state.leader, state.leader_epoch, state.replicas, state.isr) == (1, EPOCH, (1,), (1,))


def test_min_insync_replicas_is_checked_against_the_isr(tmp_path: Path) -> None:
    partition = manager(tmp_path, {"t": 1}, {}).leader_partition("t", 0)
    partition.check_min_insync(1)
    with pytest.raises(KafkaError) as short:
        partition.check_min_insync(2)
    assert code(short) is ErrorCode.NOT_ENOUGH_REPLICAS and "min.insync.replicas" in str(short.value)


def test_a_recreated_topic_gets_a_new_partition(tmp_path: Path) -> None:
    logs: dict[tuple[str, int], Log] = {}
    replicas = manager(tmp_path, {"t": 1}, logs)
    first = replicas.leader_partition("t", 0)
    assert replicas.leader_partition("t", 0) is first
    replicas.forget_topic("t")
    del logs[("t", 0)]  # the log manager removed the old log; the topic came back with a new one
    second = replicas.leader_partition("t", 0)
    assert second is not first and second.log is not first.log
    for log in [first.log, second.log]:
        log.close()


# --- the ISR on the leader (followers are driven by their fetch offsets) ------------------------------------
LAG_MS = 1_000


def three_replicas(tmp_path: Path, changes: list[tuple[int, ...]], *, recorded: bool = True) -> Partition:
    """Replicas 1 (the leader), 2 and 3, all in sync; each ISR change is noted in ``changes`` and, with
    ``recorded``, recorded by the control plane at once."""
    log = Log.open(tmp_path / "r-0", "r", 0, LogConfig())
    state = PartitionState(leader=1, leader_epoch=EPOCH, replicas=(1, 2, 3), isr=(1, 2, 3))

    def on_isr_change(partition: Partition, isr: tuple[int, ...]) -> None:
        changes.append(isr)
        if recorded:
            partition.isr_committed(isr)

    return Partition("r", 0, log, state, node_id=1, replica_lag_time_max_ms=LAG_MS, on_isr_change=on_isr_change)


def append(partition: Partition, count: int = 1) -> int:
    result = partition.append_as_leader(build_batch([(b"k", b"v", [], 1_000)] * count), now_ms=1_000)
    return result.last_offset + 1


def test_the_high_watermark_waits_for_every_in_sync_replica(tmp_path: Path) -> None:
    partition = three_replicas(tmp_path, [])
    end = append(partition, 5)
    assert partition.log.high_watermark == 0  # nobody else has it yet
    partition.record_follower_fetch(2, end, now_ms=2_000)
    assert partition.log.high_watermark == 0  # replica 3 is in sync and has nothing
    partition.record_follower_fetch(3, 3, now_ms=2_000)
    assert partition.log.high_watermark == 3
    partition.record_follower_fetch(3, end, now_ms=2_001)
    assert partition.log.high_watermark == end
    with pytest.raises(KafkaError) as stranger:
        partition.record_follower_fetch(9, 0, now_ms=2_002)
    assert code(stranger) is ErrorCode.NOT_LEADER_OR_FOLLOWER
    partition.log.close()


def test_a_lagging_follower_leaves_the_isr_and_rejoins_once_caught_up(tmp_path: Path) -> None:
    changes: list[tuple[int, ...]] = []
    partition = three_replicas(tmp_path, changes)
    start = partition.follower_progress(2)
    assert start is not None and start.last_caught_up_ms > 0  # leadership start counts as caught up
    now = start.last_caught_up_ms
    end = append(partition, 4)
    partition.record_follower_fetch(2, end, now_ms=now + 100)  # caught up
    partition.record_follower_fetch(3, 0, now_ms=now + 100)  # behind
    assert partition.maybe_shrink_isr(now + 500) == ()
    partition.record_follower_fetch(2, end, now_ms=now + LAG_MS)  # 2 keeps fetching; 3 went quiet
    assert partition.maybe_shrink_isr(now + LAG_MS + 200) == (3,)
    assert partition.state.isr == (1, 2) and changes == [(1, 2)]
    assert partition.log.high_watermark == end  # no longer waits for replica 3
    end = append(partition, 2)
    partition.record_follower_fetch(3, end - 1, now_ms=now + LAG_MS + 300)  # not at the leader's end yet
    assert partition.state.isr == (1, 2)
    partition.record_follower_fetch(3, end, now_ms=now + LAG_MS + 400)  # caught up, and past the HW
    assert partition.state.isr == (1, 2, 3) and changes[-1] == (1, 2, 3)
    partition.log.close()


def test_a_follower_whose_broker_died_leaves_the_isr_at_once(tmp_path: Path) -> None:
    """A broker whose session in the control plane ended is dropped from the ISR at the next check, caught up
    or not, so the high watermark stops waiting for it long before ``replica_lag_time_max_ms``."""
    changes: list[tuple[int, ...]] = []
    partition = three_replicas(tmp_path, changes)
    start = partition.follower_progress(2)
    assert start is not None
    now = start.last_caught_up_ms
    end = append(partition, 3)
    partition.record_follower_fetch(2, end, now_ms=now + 10)
    assert partition.log.high_watermark == 0  # replica 3 has nothing
    assert partition.maybe_shrink_isr(now + 20) == ()  # well within the lag time
    assert partition.maybe_shrink_isr(now + 20, dead=frozenset({3})) == (3,)
    assert partition.state.isr == (1, 2) and changes == [(1, 2)] and partition.log.high_watermark == end
    partition.log.close()


def test_the_high_watermark_waits_for_a_dropped_follower_until_the_control_plane_records_the_drop(
        tmp_path: Path) -> None:
    """Kafka's "maximal ISR": while the control plane still lists replica 3 as in sync, it could be elected
    leader, so nothing it lacks is acknowledged until the shrink is recorded."""
    changes: list[tuple[int, ...]] = []
    partition = three_replicas(tmp_path, changes, recorded=False)
    start = partition.follower_progress(2)
    assert start is not None
    now = start.last_caught_up_ms
    end = append(partition, 3)
    partition.record_follower_fetch(2, end, now_ms=now + 10)
    assert partition.maybe_shrink_isr(now + 20, dead=frozenset({3})) == (3,)
    assert partition.state.isr == (1, 2) and changes == [(1, 2)]
    assert partition.log.high_watermark == 0  # the drop is not recorded yet: replica 3 still counts
    partition.isr_committed((1, 2))
    assert partition.log.high_watermark == end
    partition.log.close()


def test_a_follower_that_fetches_stays_in_the_isr_while_the_view_still_calls_it_dead(tmp_path: Path) -> None:
    """The control plane's view is a poll old: a broker that restarted, caught up and rejoined is still dead
    there for a moment. Its fetches prove it alive, so the ISR does not flap; once it stops fetching, it goes."""
    changes: list[tuple[int, ...]] = []
    partition = three_replicas(tmp_path, changes)
    start = partition.follower_progress(3)
    assert start is not None
    now = start.last_caught_up_ms
    end = append(partition, 3)
    partition.record_follower_fetch(2, end, now_ms=now + 10)
    partition.record_follower_fetch(3, end, now_ms=now + 10)
    assert partition.maybe_shrink_isr(now + 20, dead=frozenset({3})) == ()
    assert partition.maybe_shrink_isr(now + 10 + FETCHED_RECENTLY_MS, dead=frozenset({3})) == ()
    partition.record_follower_fetch(2, end, now_ms=now + 10 + FETCHED_RECENTLY_MS)  # replica 2 keeps fetching
    assert partition.maybe_shrink_isr(now + 11 + FETCHED_RECENTLY_MS, dead=frozenset({3})) == (3,)
    assert partition.state.isr == (1, 2) and changes == [(1, 2)]
    partition.log.close()


def test_a_follower_that_keeps_up_with_a_steady_stream_stays_in_sync(tmp_path: Path) -> None:
    """Kafka's rule: having what the leader had at the previous fetch counts as caught up, so appends
    between fetches never make a follower that keeps up look behind."""
    partition = three_replicas(tmp_path, [])
    progress = partition.follower_progress(2)
    assert progress is not None
    now = progress.last_caught_up_ms
    previous_end = partition.log.log_end_offset
    for step in range(1, 20):
        end = append(partition)
        partition.record_follower_fetch(2, previous_end, now_ms=now + step * 400)
        partition.record_follower_fetch(3, end, now_ms=now + step * 400)
        previous_end = end
    assert partition.maybe_shrink_isr(now + 20 * 400) == ()
    partition.log.close()


def test_acks_all_waits_for_the_high_watermark(tmp_path: Path) -> None:
    partition = three_replicas(tmp_path, [])
    end = append(partition, 2)

    async def scenario() -> None:
        waiting = asyncio.create_task(partition.wait_for_high_watermark(end, timeout_s=5))
        await asyncio.sleep(0)
        assert not waiting.done()
        partition.record_follower_fetch(2, end, now_ms=int(time.time() * 1000))
        assert not waiting.done()
        partition.record_follower_fetch(3, end, now_ms=int(time.time() * 1000))
        assert await asyncio.wait_for(waiting, 5) is True
        assert await partition.wait_for_high_watermark(end + 1, timeout_s=0.05) is False

    asyncio.run(scenario())
    partition.log.close()
