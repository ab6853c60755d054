"""CreateTopics (19), DeleteTopics (20) and CreatePartitions (37).

Each topic in a request succeeds or fails on its own, with an error code and a message. Every change to an
existing topic first passes :func:`umbra.cluster.configs.check_topic_mutation` (the broker's
``topic_policy``, e.g. shadow topics refuse deletes and partition changes).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from umbra.cluster.configs import (
    TopicMutation,
    TopicPolicy,
    check_topic_mutation,
    describe_topic,
    validate_topic_configs,
)
from umbra.cluster.control import ControlPlaneError
from umbra.cluster.metadata import TopicMetadata, validate_topic_name
from umbra.cluster.placement import check_replica_lists, indexed_replica_lists
from umbra.errors import (
    ErrorCode,
    InvalidPartitions,
    InvalidReplicaAssignment,
    InvalidReplicationFactor,
    InvalidRequest,
    InvalidTopic,
    KafkaError,
    TopicAlreadyExists,
    TopicAuthorizationFailed,
    UnknownTopicId,
    UnknownTopicOrPartition,
)
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles

log = logging.getLogger("umbra.handlers.topics")

ZERO_UUID = uuid.UUID(int=0)
# A guard against one request creating so many partition logs that the broker stalls.
MAX_PARTITIONS_PER_TOPIC = 10_000


def error_fields(exc: KafkaError | OSError, what: str) -> tuple[int, str]:
    """(error code, message) for one item of a batched request that failed. A storage error is the disk's:
    KAFKA_STORAGE_ERROR. Anything else is a bug, and reaches the connection, which logs it with its traceback."""
    if isinstance(exc, KafkaError):
        return int(exc.code), exc.message
    log.error("%s failed: %s", what, exc)
    return int(ErrorCode.KAFKA_STORAGE_ERROR), f"{what} failed: {exc}"


def topic_policy(ctx: RequestContext) -> TopicPolicy:
    return ctx.broker.topic_policy


def live_broker_count(ctx: RequestContext) -> int:
    return len(live_broker_ids(ctx))


def live_broker_ids(ctx: RequestContext) -> frozenset[int]:
    """The brokers a replica may be placed on: this one alone, or the cluster's live brokers."""
    if not ctx.broker.clustered:
        return frozenset((ctx.broker.node_id,))
    return frozenset(b.node_id for b in ctx.broker.control.view().alive_brokers())


def refuse_if_internal(topic: TopicMetadata, action: str) -> None:
    if topic.internal or topic.name.startswith("__"):
        raise InvalidTopic(f"topic {topic.name!r} is internal to the broker and cannot be {action}")


def duplicates(names: list[str | None]) -> set[str | None]:
    return {name for name, count in Counter(names).items() if count > 1}


# --- CreateTopics --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TopicPlan:
    """A CreatableTopic, validated."""

    partitions: int
    replication_factor: int
    configs: dict[str, str]  # normalised overrides
    replica_lists: list[list[int]] | None  # the operator's placement, partition by partition (None: automatic)


def _manual_placement(ctx: RequestContext, topic: Any) -> list[list[int]]:
    """CreateTopics ``assignments``, checked as Kafka does: with num_partitions and replication_factor -1, partition
    ids 0..n-1, and replica lists of live brokers, without repeats, all of one length."""
    if topic.num_partitions != -1 or topic.replication_factor != -1:
        raise InvalidRequest("num_partitions and replication_factor must be -1 when assignments are given: "
                             "both cannot be used at the same time")
    replica_lists = indexed_replica_lists([(a.partition_index, list(a.broker_ids)) for a in topic.assignments])
    if len(replica_lists) > MAX_PARTITIONS_PER_TOPIC:
        raise InvalidPartitions(f"Number of partitions {len(replica_lists)} is above this broker's limit of "
                                f"{MAX_PARTITIONS_PER_TOPIC} per topic")
    check_replica_lists(replica_lists, live_broker_ids(ctx))
    return replica_lists


def _plan_topic(ctx: RequestContext, topic: Any) -> TopicPlan:
    """Validate one CreatableTopic."""
    config = ctx.broker.config
    validate_topic_name(topic.name)
    if ctx.broker.metadata.topic(topic.name) is not None:
        raise TopicAlreadyExists(f"Topic '{topic.name}' already exists.")
    repeated = duplicates([c.name for c in topic.configs])
    if repeated:
        raise InvalidRequest(f"config {next(iter(repeated))!r} appears more than once")
    configs = validate_topic_configs({c.name: c.value for c in topic.configs if c.value is not None})
    if topic.assignments:
        replica_lists = _manual_placement(ctx, topic)
        return TopicPlan(len(replica_lists), len(replica_lists[0]), configs, replica_lists)
    partitions = config.num_partitions if topic.num_partitions == -1 else topic.num_partitions
    if partitions <= 0:
        raise InvalidPartitions(f"Number of partitions must be positive (or -1 for the broker default "
                                f"{config.num_partitions}), got {topic.num_partitions}")
    if partitions > MAX_PARTITIONS_PER_TOPIC:
        raise InvalidPartitions(f"Number of partitions {partitions} is above this broker's limit of "
                                f"{MAX_PARTITIONS_PER_TOPIC} per topic")
    replication = config.default_replication_factor if topic.replication_factor == -1 else topic.replication_factor
    if replication <= 0:
        raise InvalidReplicationFactor(f"Replication factor must be positive (or -1 for the broker default), "
                                       f"got {topic.replication_factor}")
    brokers = live_broker_count(ctx)
    if replication > brokers:
        raise InvalidReplicationFactor(f"Replication factor: {replication} larger than available brokers: {brokers}.")
    return TopicPlan(partitions, replication, configs, None)


def _created_result(ctx: RequestContext, name: str, topic_id: uuid.UUID, partitions: int, replication: int,
                    configs: dict[str, str]) -> dict[str, Any]:
    broker = ctx.broker
    result = {"name": name, "topic_id": topic_id, "error_code": 0, "error_message": None,
              "num_partitions": partitions, "replication_factor": replication, "configs": []}
    if not ctx.authorized(AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, name):  # created, configs not shown
        if ctx.api_version >= 5:
            result["topic_config_error_code"] = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        return result
    entries = describe_topic(broker.config, configs, broker.metadata.broker_configs())
    result["configs"] = [{"name": e.name, "value": e.value, "read_only": e.read_only, "config_source": int(e.source),
                          "is_sensitive": e.is_sensitive} for e in entries]
    return result


def _failed_result(name: str, code: int, message: str) -> dict[str, Any]:
    return {"name": name, "topic_id": ZERO_UUID, "error_code": code, "error_message": message,
            "num_partitions": -1, "replication_factor": -1, "configs": []}


@handles(19, "CreateTopics", 0, 7)
async def handle_create_topics(ctx: RequestContext, request: Any) -> dict[str, Any]:
    validate_only = bool(getattr(request, "validate_only", False)) and ctx.api_version >= 1
    repeated = duplicates([t.name for t in request.topics])
    if ctx.broker.clustered and ctx.broker.control.is_controller():
        try:  # the live brokers now, not at the last poll: a broker that just joined counts for the replicas
            await ctx.broker.control.refresh()
        except ControlPlaneError:
            pass  # etcd out of reach: require_controller answers for each topic
    may_create_any = ctx.authorized_cluster(AclOperation.CREATE)  # else CREATE on each topic
    results = []
    for topic in request.topics:
        if topic.name in repeated:
            results.append(_failed_result(topic.name, int(ErrorCode.INVALID_REQUEST),
                                          f"Topic '{topic.name}' appears more than once in the request."))
            continue
        try:
            if not may_create_any:
                ctx.require_topic(AclOperation.CREATE, topic.name)
            plan = _plan_topic(ctx, topic)
            partitions, replication, configs = plan.partitions, plan.replication_factor, plan.configs
            if ctx.broker.clustered:
                ctx.broker.require_controller()
            if validate_only:
                topic_id = ZERO_UUID
            elif ctx.broker.clustered and plan.replica_lists is not None:  # in etcd as given (brokers checked again)
                topic_id = (await ctx.broker.control.create_topic(topic.name, partitions, configs, replication,
                                                                  replica_lists=plan.replica_lists)).topic_id
            elif ctx.broker.clustered:  # in etcd, assigned over the live brokers; each opens what it leads
                topic_id = (await ctx.broker.create_cluster_topic(topic.name, partitions, configs, replication)).topic_id
            else:
                meta = ctx.broker.create_topic(topic.name, partitions, configs, open_logs=False)
                await ctx.broker.open_topic_logs(meta)
                topic_id = meta.topic_id
                log.info("created topic %r: %d partitions, configs %s", topic.name, partitions, configs)
            results.append(_created_result(ctx, topic.name, topic_id, partitions, replication, configs))
        except (KafkaError, OSError) as exc:
            results.append(_failed_result(topic.name, *error_fields(exc, f"creating topic {topic.name!r}")))
    return {"throttle_time_ms": 0, "topics": results}


# --- DeleteTopics --------------------------------------------------------------------------------
def _topic_to_delete(ctx: RequestContext, name: str | None, topic_id: uuid.UUID) -> TopicMetadata:
    metadata = ctx.broker.metadata
    if name is not None and topic_id != ZERO_UUID:
        raise InvalidRequest("give a topic's name or its id, not both")
    if name is not None:
        return metadata.require_topic(name)
    if topic_id == ZERO_UUID:
        raise InvalidRequest("neither a topic name nor a topic id was given")
    topic = metadata.topic_by_id(topic_id)
    if topic is None:
        raise UnknownTopicId(f"no topic has id {topic_id}")
    return topic


@handles(20, "DeleteTopics", 0, 6)
async def handle_delete_topics(ctx: RequestContext, request: Any) -> dict[str, Any]:
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id or ZERO_UUID) for t in request.topics]
    else:
        wanted = [(name, ZERO_UUID) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        result: dict[str, Any] = {"name": name, "topic_id": topic_id, "error_code": 0, "error_message": None}
        try:
            if name is not None:
                ctx.require_topic(AclOperation.DELETE, name)  # before saying whether it exists
            topic = _topic_to_delete(ctx, name, topic_id)
            if name is None and not ctx.authorized(AclOperation.DESCRIBE, ResourceType.TOPIC, topic.name):
                raise TopicAuthorizationFailed(f"{ctx.principal} is not authorized to DESCRIBE topic {topic_id}")
            result.update(name=topic.name, topic_id=topic.topic_id)  # named by id: the name, to whom may see it
            if name is None:
                ctx.require_topic(AclOperation.DELETE, topic.name)
            refuse_if_internal(topic, "deleted")
            check_topic_mutation(topic_policy(ctx), topic, TopicMutation.DELETE)
            if ctx.broker.clustered:
                ctx.broker.require_controller()
                await ctx.broker.control.delete_topic(topic.name)  # every broker removes its part when it reads it
            else:
                await ctx.broker.delete_topic(topic.name)
            log.info("deleted topic %r (%s)", topic.name, topic.topic_id)
        except (KafkaError, OSError) as exc:
            result["error_code"], result["error_message"] = error_fields(exc, f"deleting topic {name or topic_id}")
        results.append(result)
    return {"throttle_time_ms": 0, "responses": results}


# --- CreatePartitions ----------------------------------------------------------------------------
def _check_new_count(topic: TopicMetadata, count: int) -> None:
    if count == topic.partitions:
        raise InvalidPartitions(f"Topic '{topic.name}' already has {count} partitions.")
    if count < topic.partitions:
        raise InvalidPartitions(f"Topic '{topic.name}' currently has {topic.partitions} partitions, "
                                f"which is higher than the requested {count}.")
    if count > MAX_PARTITIONS_PER_TOPIC:
        raise InvalidPartitions(f"Number of partitions {count} is above this broker's limit of "
                                f"{MAX_PARTITIONS_PER_TOPIC} per topic")


def _new_partition_placement(ctx: RequestContext, topic: TopicMetadata, item: Any) -> list[list[int]] | None:
    """CreatePartitions ``assignments`` (one replica list per new partition, of the topic's replication factor and
    live brokers), or None for the automatic placement."""
    if not item.assignments:
        return None
    replica_lists = [list(a.broker_ids) for a in item.assignments]
    added = item.count - topic.partitions
    if len(replica_lists) != added:
        raise InvalidReplicaAssignment(f"Topic '{topic.name}' grows by {added} partitions but {len(replica_lists)} "
                                       f"replica assignments were given")
    first = topic.assignments[0] if topic.assignments else None  # a reassignment's target is its factor-to-be
    replication = len(first.target or first.replicas) if first is not None else 1
    check_replica_lists(replica_lists, live_broker_ids(ctx), replication, topic.partitions)
    return replica_lists


@handles(37, "CreatePartitions", 0, 3)
async def handle_create_partitions(ctx: RequestContext, request: Any) -> dict[str, Any]:
    repeated = duplicates([t.name for t in request.topics])
    results = []
    for item in request.topics:
        result: dict[str, Any] = {"name": item.name, "error_code": 0, "error_message": None}
        try:
            if item.name in repeated:
                raise InvalidRequest(f"Topic '{item.name}' appears more than once in the request.")
            ctx.require_topic(AclOperation.ALTER, item.name)
            topic = ctx.broker.metadata.topic(item.name)
            if topic is None:
                raise UnknownTopicOrPartition(f"topic '{item.name}' does not exist")
            refuse_if_internal(topic, "repartitioned")
            _check_new_count(topic, item.count)
            replica_lists = _new_partition_placement(ctx, topic, item)
            check_topic_mutation(topic_policy(ctx), topic, TopicMutation.CREATE_PARTITIONS)
            if ctx.broker.clustered:
                ctx.broker.require_controller()
            if request.validate_only:
                pass
            elif ctx.broker.clustered:  # assigned in etcd; the leaders open them when they read it
                await ctx.broker.control.add_partitions(item.name, item.count, replica_lists)
                log.info("topic %r now has %d partitions", item.name, item.count)
            else:
                await ctx.broker.open_topic_logs(ctx.broker.add_partitions(item.name, item.count, open_logs=False))
                log.info("topic %r now has %d partitions", item.name, item.count)
        except (KafkaError, OSError) as exc:
            result["error_code"], result["error_message"] = error_fields(exc, f"adding partitions to {item.name!r}")
        results.append(result)
    return {"throttle_time_ms": 0, "results": results}

