"""The replica manager: the one place that checks leadership and epochs, stamps appends and moves the HW."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from umbra.cluster.metadata import TopicMetadata
from umbra.errors import ErrorCode, KafkaError
from umbra.records.batch import validate_record_set
from umbra.records.records import build_batch
from umbra.server.replicas import ReplicaManager
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
