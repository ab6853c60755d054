"""DescribeConfigs (32), AlterConfigs (33) and IncrementalAlterConfigs (44), for topics, brokers and groups.

Definitions, validation and precedence live in :mod:`umbra.cluster.configs` (and
:mod:`umbra.cluster.group_configs`); this module maps requests to them. Each resource succeeds or fails on
its own. A broker resource is named ``""`` (cluster-wide dynamic defaults) or this broker's id (dynamic
configs of this broker only); a group resource (KIP-848) by its group id, which need not exist yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from umbra.cluster import configs as defs
from umbra.cluster import group_configs
from umbra.cluster.configs import ConfigEntry, TopicMutation, check_topic_mutation
from umbra.errors import InvalidRequest, KafkaError
from umbra.security.acls import AclOperation
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.topics import duplicates, error_fields, topic_policy

log = logging.getLogger("umbra.handlers.configs")

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8
GROUP = 32


def _broker_scope(ctx: RequestContext, name: str) -> int | None:
    """None for the cluster-wide default resource "", else this broker's id."""
    if name == "":
        return None
    try:
        node_id = int(name)
    except (TypeError, ValueError):
        raise InvalidRequest(f"a broker resource is named by a broker id or \"\", not {name!r}") from None
    if node_id != ctx.broker.node_id:
        raise InvalidRequest(f"this is broker {ctx.broker.node_id}; send requests about broker {node_id} to it")
    return node_id


class _ConfigResource(Protocol):
    """A resource of a DescribeConfigs, AlterConfigs or IncrementalAlterConfigs request."""

    resource_type: int
    resource_name: str


def _authorize(ctx: RequestContext, resource: _ConfigResource, operation: AclOperation) -> None:
    """DESCRIBE_CONFIGS or ALTER_CONFIGS: on the topic for a topic's configs, on the group for a group's, on
    the cluster for a broker's (as Kafka). Other types have no configs here, and are refused as such."""
    if resource.resource_type == TOPIC:
        ctx.require_topic(operation, resource.resource_name)
    elif resource.resource_type == GROUP:
        ctx.require_group(operation, resource.resource_name)
    elif resource.resource_type in (BROKER, BROKER_LOGGER):
        ctx.require_cluster(operation)


def _unsupported(resource_type: int) -> KafkaError:
    return InvalidRequest(f"resource type {resource_type} has no configs here; umbra has TOPIC ({TOPIC}), "
                          f"BROKER ({BROKER}) and GROUP ({GROUP}) configs")


def _group_id(name: str) -> str:
    if not name:
        raise InvalidRequest("Default group resources are not allowed.")  # Kafka's words
    return name


def _resource_result(resource: Any, exc: KafkaError | OSError | None, what: str) -> dict[str, Any]:
    code, message = (0, None) if exc is None else error_fields(exc, what)
    return {"error_code": code, "error_message": message, "resource_type": resource.resource_type,
            "resource_name": resource.resource_name}


def _repeated_resources(resources: list[Any]) -> set[str | None]:
    return duplicates([f"{r.resource_type}/{r.resource_name}" for r in resources])


# --- DescribeConfigs -----------------------------------------------------------------------------
def _entry_fields(entry: ConfigEntry, version: int, synonyms: bool, documentation: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": entry.name, "value": entry.value, "read_only": entry.read_only,
                              "is_sensitive": entry.is_sensitive}
    if version == 0:
        fields["is_default"] = entry.is_default
        return fields
    fields["config_source"] = int(entry.source)
    fields["synonyms"] = ([{"name": s.name, "value": s.value, "source": int(s.source)} for s in entry.synonyms]
                          if synonyms else [])
    if version >= 3:
        fields["config_type"] = int(entry.type)
        fields["documentation"] = entry.doc if documentation else None
    return fields


def _describe(ctx: RequestContext, resource: Any) -> list[ConfigEntry]:
    broker = ctx.broker
    _authorize(ctx, resource, AclOperation.DESCRIBE_CONFIGS)
    keys = resource.configuration_keys or None  # null, and (as in Kafka) an empty list, mean every key
    if resource.resource_type == TOPIC:
        topic = broker.metadata.require_topic(resource.resource_name)
        return defs.describe_topic(broker.config, topic.configs, broker.metadata.broker_configs(), keys)
    if resource.resource_type == BROKER:
        scope = _broker_scope(ctx, resource.resource_name)
        return defs.describe_broker(broker.config, broker.metadata.broker_configs(), scope is None, keys)
    if resource.resource_type == GROUP:
        group_id = _group_id(resource.resource_name)
        document = broker.control.document(group_configs.GROUP_CONFIGS_DOCUMENT)
        return group_configs.describe_group(broker.config, group_configs.overrides_of(document, group_id), keys)
    raise _unsupported(resource.resource_type)


@handles(32, "DescribeConfigs", 0, 4)
async def handle_describe_configs(ctx: RequestContext, request: Any) -> dict[str, Any]:
    version = ctx.api_version
    synonyms = version >= 1 and bool(request.include_synonyms)
    documentation = version >= 3 and bool(request.include_documentation)
    results = []
    for resource in request.resources:
        try:
            entries = _describe(ctx, resource)
        except (KafkaError, OSError) as exc:
            result = _resource_result(resource, exc, f"describing configs of {resource.resource_name!r}")
            result["configs"] = []
        else:
            result = _resource_result(resource, None, "")
            result["configs"] = [_entry_fields(e, version, synonyms, documentation) for e in entries]
        results.append(result)
    return {"throttle_time_ms": 0, "results": results}


# --- AlterConfigs and IncrementalAlterConfigs ----------------------------------------------------
# Both compute a resource's complete new override set, then _apply_* validates it as a whole, checks the
# topic policy, and stores it (unless validate_only).
NewConfigs = Callable[[Mapping[str, str], Callable[[str], str]], dict[str, str]]


async def _apply_topic(ctx: RequestContext, name: str, new_configs: NewConfigs, validate_only: bool) -> None:
    broker = ctx.broker
    topic = broker.metadata.require_topic(name)
    dynamic = broker.metadata.broker_configs()

    def effective(key: str) -> str:
        return defs.effective_topic_config(key, broker.config, topic.configs, dynamic)

    updated = defs.validate_topic_configs(new_configs(topic.configs, effective))
    defs.log_config_for(broker.config, updated, dynamic)  # the storage layer's own checks, before storing
    changed = {k for k in set(updated) | set(topic.configs) if updated.get(k) != topic.configs.get(k)}
    check_topic_mutation(topic_policy(ctx), topic, TopicMutation.ALTER_CONFIGS, changed)
    if broker.clustered:
        broker.require_controller()
    if validate_only or not changed:
        return
    if broker.clustered:  # in etcd: every broker applies them when it reads the topic
        await broker.control.set_topic_configs(name, updated)
    else:
        broker.metadata.set_topic_configs(name, updated)
        broker.topic_configs_changed(name)
    log.info("topic %r configs now %s (changed %s)", name, updated, sorted(changed))


async def _apply_broker(ctx: RequestContext, name: str, new_configs: NewConfigs, validate_only: bool) -> None:
    broker = ctx.broker
    scope = _broker_scope(ctx, name)
    stored = broker.metadata.broker_configs()
    current = defs.dynamic_scope(stored, scope)

    def effective(key: str) -> str:
        return defs.broker_synonyms(defs.BROKER_CONFIGS[key], broker.config, stored)[0].value

    updated = defs.validate_broker_configs(new_configs(current, effective), scope)
    all_configs = defs.replace_dynamic_scope(stored, scope, updated)
    defs.log_config_for(broker.config, {}, all_configs)
    defs.check_broker_changes(broker.config, stored, all_configs)
    if validate_only or all_configs == dict(stored):
        return
    if broker.clustered:  # one document in etcd: every broker takes it when it reads it
        await broker.control.update_document(
            "broker_configs", lambda current: defs.replace_dynamic_scope(current or {}, scope, updated))
    broker.metadata.set_broker_configs(all_configs)
    broker.broker_configs_changed()
    log.info("dynamic broker configs (%s) now %s", "cluster-wide" if scope is None else f"broker {scope}", updated)


async def _apply_group(ctx: RequestContext, name: str, new_configs: NewConfigs, validate_only: bool) -> None:
    broker = ctx.broker
    group_id = _group_id(name)
    document = group_configs.GROUP_CONFIGS_DOCUMENT
    current = group_configs.overrides_of(broker.control.document(document), group_id)

    def effective(key: str) -> str:
        definition = group_configs.group_config_def(key)
        return current.get(key) or group_configs.default_value(definition, broker.config)

    updated = group_configs.validate_group_configs(new_configs(current, effective), broker.config)
    if validate_only or updated == current:
        return
    # A control-plane document: a file in the data directory of a single broker, a key in etcd on a cluster.
    await broker.control.update_document(
        document, lambda stored: group_configs.with_overrides(stored, group_id, updated))
    log.info("group %r configs now %s", group_id, updated)


async def _alter_resources(ctx: RequestContext, request: Any,
                           new_configs_of: Callable[[Any], NewConfigs]) -> dict[str, Any]:
    repeated = _repeated_resources(request.resources)
    results = []
    for resource in request.resources:
        try:
            if f"{resource.resource_type}/{resource.resource_name}" in repeated:
                raise InvalidRequest(f"resource {resource.resource_name!r} appears more than once in the request")
            repeated_configs = duplicates([c.name for c in resource.configs])
            if repeated_configs:
                raise InvalidRequest(f"config {next(iter(repeated_configs))!r} appears more than once")
            _authorize(ctx, resource, AclOperation.ALTER_CONFIGS)
            if resource.resource_type == TOPIC:
                apply = _apply_topic
            elif resource.resource_type == BROKER:
                apply = _apply_broker
            elif resource.resource_type == GROUP:
                apply = _apply_group
            else:
                raise _unsupported(resource.resource_type)
            await apply(ctx, resource.resource_name, new_configs_of(resource), bool(request.validate_only))
            results.append(_resource_result(resource, None, ""))
        except (KafkaError, OSError) as exc:
            results.append(_resource_result(resource, exc, f"altering configs of {resource.resource_name!r}"))
    return {"throttle_time_ms": 0, "responses": results}


@handles(33, "AlterConfigs", 0, 2)
async def handle_alter_configs(ctx: RequestContext, request: Any) -> dict[str, Any]:
    """Replace each resource's whole override set with the given configs."""

    def new_configs_of(resource: Any) -> NewConfigs:
        return lambda _current, _effective: {c.name: c.value for c in resource.configs}

    return await _alter_resources(ctx, request, new_configs_of)


@handles(44, "IncrementalAlterConfigs", 0, 1)
async def handle_incremental_alter_configs(ctx: RequestContext, request: Any) -> dict[str, Any]:
    """SET, DELETE, APPEND and SUBTRACT single configs; the others keep their values."""

    def new_configs_of(resource: Any) -> NewConfigs:
        ops = [(c.name, c.config_operation, c.value) for c in resource.configs]
        definition_of: Callable[[str], defs.Definition]
        if resource.resource_type == TOPIC:
            definition_of = defs.topic_config_def
        elif resource.resource_type == GROUP:
            definition_of = group_configs.group_config_def
        else:
            scope = _broker_scope(ctx, resource.resource_name)
            definition_of = lambda name: defs.dynamic_broker_config_def(name, scope)  # noqa: E731
        return lambda current, effective: defs.apply_incremental(current, ops, definition_of, effective)

    return await _alter_resources(ctx, request, new_configs_of)
