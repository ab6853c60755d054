"""Produce (0): validate and append record batches; acks 0, 1 and all; idempotent producers.

The batches are appended verbatim (CRC-checked, offsets stamped into their
headers); they are never decompressed or recompressed. With a single replica,
the high watermark moves with the log end offset, so acks=1 and acks=all wait
for the same thing; with ``fsync_before_ack`` acks=all also waits for an fsync.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from umbra.cluster.configs import min_insync_replicas
from umbra.errors import (
    ErrorCode,
    InvalidRecord,
    InvalidRequiredAcks,
    KafkaError,
    KafkaStorageError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartition,
)
from umbra.records.validation import RecordValidationError
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles, topic_denied
from umbra.server.replicas import Partition
from umbra.storage.log import Log


def _partition_error(index: int, exc: KafkaError) -> dict[str, Any]:
    # KIP-467: the records a per-record rule refused (v8+; the codec leaves them out of older versions).
    record_errors = [{"batch_index": error.batch_index, "batch_index_error_message": error.message}
                     for error in exc.record_errors] if isinstance(exc, RecordValidationError) else []
    return {"index": index, "error_code": int(exc.code), "base_offset": -1, "log_append_time_ms": -1,
            "log_start_offset": -1, "record_errors": record_errors, "error_message": str(exc) or exc.code.name}


async def _wait_for_isr(waits: list[tuple[Partition, dict[str, Any], int, int]], timeout_ms: int) -> None:
    """acks=all: each append is acknowledged once every in-sync replica has it (the high watermark passed it).
    REQUEST_TIMED_OUT after the request's timeout; NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank
    below min.insync.replicas meanwhile (the records are written, but not as safely as asked)."""
    timeout_s = max(timeout_ms, 0) / 1000
    outcomes = await asyncio.gather(*(partition.wait_for_high_watermark(offset, timeout_s)
                                      for partition, _, offset, _ in waits))
    for (partition, entry, _, required), replicated in zip(waits, outcomes, strict=True):
        if len(partition.state.isr) < required:
            entry.update(_partition_error(entry["index"], KafkaError(
                f"written, but the ISR of {partition.topic}-{partition.index} shrank to {len(partition.state.isr)}, "
                f"below min.insync.replicas {required}", ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)))
        elif not replicated:
            entry.update(_partition_error(entry["index"], KafkaError(
                f"the in-sync replicas of {partition.topic}-{partition.index} did not confirm the append within "
                f"{timeout_ms} ms", ErrorCode.REQUEST_TIMED_OUT)))


@handles(0, "Produce", 3, 11)
async def handle_produce(ctx: RequestContext, request: Any) -> dict[str, Any] | None:
    broker = ctx.broker
    acks = request.acks
    now_ms = int(time.time() * 1000)
    responses = []
    to_flush: list[tuple[Log, dict[str, Any]]] = []
    to_replicate: list[tuple[Partition, dict[str, Any], int, int]] = []  # acks=all: wait for the ISR
    # Authorize: WRITE on each topic (before saying whether it exists), and on the transactional id if any.
    denied = ctx.denied_topics(AclOperation.WRITE, (t.name for t in request.topic_data))
    transactional_id = request.transactional_id
    transaction_denied = transactional_id is not None and not ctx.authorized(
        AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id)
    for topic_data in request.topic_data:
        name = topic_data.name
        partitions = []
        for pdata in topic_data.partition_data:
            try:
                if acks not in (-1, 0, 1):
                    raise InvalidRequiredAcks(f"acks must be -1, 0 or 1, got {acks}")
                if transaction_denied:
                    raise TransactionalIdAuthorizationFailed(f"{ctx.principal} is not authorized to WRITE "
                                                             f"transactional id {transactional_id!r}")
                if name in denied:
                    raise topic_denied(ctx.principal, AclOperation.WRITE, name)
                if transactional_id is not None:
                    raise KafkaError("transactions are not supported by this broker", ErrorCode.INVALID_TXN_STATE)
                if pdata.records is None:
                    raise InvalidRecord("the produce request has no record set")
                meta = broker.metadata.topic(name)
                if meta is None or not 0 <= pdata.index < meta.partitions:
                    raise UnknownTopicOrPartition(f"{name}-{pdata.index} does not exist")
                broker.check_writable(meta)
                partition = broker.replicas.leader_partition(name, pdata.index)
                required = 1
                if acks == -1:
                    required = min_insync_replicas(broker.config, meta.configs, broker.metadata.broker_configs())
                    partition.check_min_insync(required)
                result = partition.append_as_leader(pdata.records, now_ms)
                log = partition.log
                broker.notifier.notify((name, pdata.index))
                broker.metrics.produced_bytes.inc(len(pdata.records))
                entry = {"index": pdata.index, "error_code": 0, "base_offset": result.base_offset,
                         "log_append_time_ms": result.log_append_time_ms, "log_start_offset": result.log_start_offset,
                         "record_errors": [], "error_message": None}
                if acks == -1 and broker.config.fsync_before_ack:
                    to_flush.append((log, entry))
                if acks == -1 and log.high_watermark <= result.last_offset:
                    to_replicate.append((partition, entry, result.last_offset + 1, required))
                partitions.append(entry)
            except KafkaError as exc:
                failed = _partition_error(pdata.index, exc)
                if exc.code is ErrorCode.NOT_LEADER_OR_FOLLOWER and ctx.api_version >= 10:
                    held = broker.replicas.state(name, pdata.index)  # KIP-951: who leads now
                    failed["current_leader"] = {"leader_id": held.leader, "leader_epoch": held.leader_epoch}
                partitions.append(failed)
        responses.append({"name": name, "partition_responses": partitions})
    if to_replicate:
        await _wait_for_isr(to_replicate, request.timeout_ms)
    if to_flush:
        loop = asyncio.get_running_loop()
        outcomes = await asyncio.gather(*(loop.run_in_executor(None, log.flush) for log, _ in to_flush),
                                        return_exceptions=True)
        for (_, entry), outcome in zip(to_flush, outcomes, strict=True):
            if isinstance(outcome, KafkaStorageError):  # written, but not made durable: not acknowledged
                entry.update(_partition_error(entry["index"], outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
    if acks == 0:
        return None
    return {"responses": responses, "throttle_time_ms": 0}
