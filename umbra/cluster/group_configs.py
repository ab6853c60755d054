"""GROUP resource configs (resource type 32, KIP-848): validation, description, and the typed accessor.

A group's overrides live in the control plane's ``group_configs`` document, ``{group id: {name: value}}``: on a
single broker a file beside the other documents in the data directory, on a cluster a key in etcd. A config
not set on the group takes its broker default (``group.consumer.session.timeout.ms`` ...), and a set one must
stay within the broker's bounds (``group.consumer.min.session.timeout.ms`` ...), as in Kafka's GroupConfig.

The group coordinator reads them with :func:`group_config`. This module is pure: no I/O, no event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from umbra.cluster.configs import BROKER_CONFIGS, ConfigEntry, ConfigSynonym, broker_synonyms
from umbra.cluster.kafka_configs import GROUP_CONFIGS, GroupConfigDef
from umbra.config import BrokerConfig
from umbra.errors import InvalidConfig
from umbra.protocol.constants import ConfigSource

GROUP_CONFIGS_DOCUMENT = "group_configs"
GROUP_CONFIG_DEFS: dict[str, GroupConfigDef] = {d.name: d for d in GROUP_CONFIGS}

# Kafka's cross-checks: a session must outlast the heartbeat interval.
_SESSION_OVER_HEARTBEAT = (("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"),
                           ("share.session.timeout.ms", "share.heartbeat.interval.ms"))


def _broker_value(broker: BrokerConfig, name: str) -> str:
    return broker_synonyms(BROKER_CONFIGS[name], broker, {})[0].value


def default_value(definition: GroupConfigDef, broker: BrokerConfig) -> str:
    return _broker_value(broker, definition.broker_default) if definition.broker_default else definition.default


def group_config_def(name: str) -> GroupConfigDef:
    definition = GROUP_CONFIG_DEFS.get(name)
    if definition is None:
        raise InvalidConfig(f"Unknown group config name: {name}")  # Kafka's words
    return definition


def validate_group_configs(configs: Mapping[str, str | None], broker: BrokerConfig) -> dict[str, str]:
    """A group's complete new override set, normalised; InvalidConfig (Kafka's messages) when a name is
    unknown, a value is bad or out of the broker's bounds, or a session timeout is not above its heartbeat."""
    normalised = {name: group_config_def(name).normalise(value) for name, value in configs.items()}
    for name, value in normalised.items():
        definition = GROUP_CONFIG_DEFS[name]
        if definition.low and int(value) < int(_broker_value(broker, definition.low)):
            raise InvalidConfig(f"{name} must be greater than or equal to {definition.low}")
        if definition.high and int(value) > int(_broker_value(broker, definition.high)):
            raise InvalidConfig(f"{name} must be less than or equal to {definition.high}")

    def effective(name: str) -> int:
        return int(normalised.get(name) or default_value(GROUP_CONFIG_DEFS[name], broker))

    for session, heartbeat in _SESSION_OVER_HEARTBEAT:
        if (session in normalised or heartbeat in normalised) and effective(session) <= effective(heartbeat):
            raise InvalidConfig(f"{session} must be greater than {heartbeat}")
    return normalised


def describe_group(broker: BrokerConfig, overrides: Mapping[str, str],
                   keys: Iterable[str] | None = None) -> list[ConfigEntry]:
    """Every group config (or those in ``keys``): GROUP_CONFIG when set on the group, else DEFAULT_CONFIG."""
    wanted = set(keys) if keys is not None else None
    entries = []
    for name in sorted(GROUP_CONFIG_DEFS):
        if wanted is not None and name not in wanted:
            continue
        definition = GROUP_CONFIG_DEFS[name]
        synonyms = [ConfigSynonym(name, default_value(definition, broker), ConfigSource.DEFAULT_CONFIG)]
        if name in overrides:
            synonyms.insert(0, ConfigSynonym(name, overrides[name], ConfigSource.GROUP_CONFIG))
        entries.append(ConfigEntry(name, synonyms[0].value, synonyms[0].source, False, definition.type,
                                   definition.doc, tuple(synonyms)))
    return entries


# --- the stored document --------------------------------------------------------------------------
def overrides_of(document: object, group_id: str) -> dict[str, str]:
    """One group's stored overrides (the document may be None: nothing set yet)."""
    if not isinstance(document, dict):
        return {}
    stored = document.get(group_id)
    if not isinstance(stored, dict):
        return {}
    return {str(k): str(v) for k, v in stored.items()}


def with_overrides(document: object, group_id: str, configs: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The document with ``group_id``'s overrides replaced (and the group dropped when it has none)."""
    updated: dict[str, dict[str, str]] = dict(document) if isinstance(document, dict) else {}
    if configs:
        updated[group_id] = dict(configs)
    else:
        updated.pop(group_id, None)
    return updated


class DocumentSource(Protocol):
    """What :func:`group_config` reads from: the broker's control plane (``broker.control``)."""

    def document(self, name: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """A group's config overrides as the coordinator uses them; None where the group sets nothing, so the
    broker's default applies (``group.consumer.session.timeout.ms`` 45000, ``..heartbeat.interval.ms`` 5000)."""

    consumer_session_timeout_ms: int | None = None
    consumer_heartbeat_interval_ms: int | None = None
    share_session_timeout_ms: int | None = None
    share_heartbeat_interval_ms: int | None = None
    share_record_lock_duration_ms: int | None = None
    share_auto_offset_reset: str | None = None

    def session_timeout_ms(self, default: int) -> int:
        return default if self.consumer_session_timeout_ms is None else self.consumer_session_timeout_ms

    def heartbeat_interval_ms(self, default: int) -> int:
        return default if self.consumer_heartbeat_interval_ms is None else self.consumer_heartbeat_interval_ms


def _int(overrides: Mapping[str, str], name: str) -> int | None:
    value = overrides.get(name)
    try:
        return None if value is None else int(value)
    except ValueError:  # validated when stored: only a hand-edited document gets here
        return None


def group_config(source: DocumentSource, group_id: str) -> GroupConfig:
    """The overrides stored for ``group_id`` (an empty GroupConfig when it has none). Cheap: one dict look-up
    in the control plane's in-memory copy of the document, so a heartbeat may call it every time."""
    overrides = overrides_of(source.document(GROUP_CONFIGS_DOCUMENT), group_id)
    if not overrides:
        return GroupConfig()
    return GroupConfig(
        consumer_session_timeout_ms=_int(overrides, "consumer.session.timeout.ms"),
        consumer_heartbeat_interval_ms=_int(overrides, "consumer.heartbeat.interval.ms"),
        share_session_timeout_ms=_int(overrides, "share.session.timeout.ms"),
        share_heartbeat_interval_ms=_int(overrides, "share.heartbeat.interval.ms"),
        share_record_lock_duration_ms=_int(overrides, "share.record.lock.duration.ms"),
        share_auto_offset_reset=overrides.get("share.auto.offset.reset"),
    )
