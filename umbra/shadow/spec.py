"""The shadow-link spec: parsed from YAML/JSON, validated with errors that name the key.

The key names are a contract operators' scripts rely on (see the README). Every
unknown key, bad type or bad value raises :class:`SpecError` with the dotted
path of the key, e.g. ``topics.filters[1].include: expected literal or prefix``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from umbra.client.settings import SaslSettings, TlsSettings, parse_sasl_settings, parse_tls_settings
from umbra.cluster.configs import TOPIC_CONFIGS
from umbra.cluster.metadata import validate_topic_name
from umbra.errors import KafkaError


class SpecError(ValueError):
    """A link spec is invalid; the message names the key."""


_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}

# Topic configs the shadow owns: its own storage layout and durability (segments, indexes, flushes,
# preallocation), its replication (min.insync.replicas and unclean elections depend on the shadow cluster's
# replicas; the throttled-replica lists name the source's brokers) and tiered storage (the shadow's own).
SHADOW_OWNED_PROPERTIES = frozenset({
    "segment.bytes", "segment.ms", "segment.jitter.ms", "segment.index.bytes", "index.interval.bytes",
    "flush.messages", "flush.ms", "preallocate", "min.insync.replicas", "unclean.leader.election.enable",
    "leader.replication.throttled.replicas", "follower.replication.throttled.replicas", "remote.storage.enable",
    "local.retention.ms", "local.retention.bytes", "remote.log.copy.disable", "remote.log.delete.on.disable"})
# Every other Kafka topic config is synced, those umbra stores without acting on included, so that a failed
# over topic describes as its source did. The compaction settings are among them: a shadow of a compacted
# topic compacts its own copy.
DEFAULT_SYNCED_PROPERTIES = tuple(sorted(name for name in TOPIC_CONFIGS if name not in SHADOW_OWNED_PROPERTIES))
# The default before umbra accepted every Kafka topic config. Stored specs spell their list out, so a link
# created then carries exactly this one: it is read as the default of today, not as a choice.
_FORMER_DEFAULT_SYNCED_PROPERTIES = ("retention.ms", "retention.bytes", "cleanup.policy", "max.message.bytes",
                                     "message.timestamp.type", "compression.type", "delete.retention.ms",
                                     "min.compaction.lag.ms", "max.compaction.lag.ms", "min.cleanable.dirty.ratio")


def parse_duration_ms(path: str, value: Any) -> int:
    """``5s``, ``500ms``, ``2m``, ``1h``; a bare number means seconds."""
    if isinstance(value, bool):
        raise SpecError(f"{path}: expected a duration like 5s or 500ms, got {value!r}")
    if isinstance(value, int):
        millis = value * 1000
    else:
        match = _DURATION.match(str(value)) if isinstance(value, str) else None
        if match is None:
            raise SpecError(f"{path}: expected a duration like 5s or 500ms, got {value!r}")
        millis = int(match.group(1)) * _UNITS[match.group(2)]
    if millis <= 0:
        raise SpecError(f"{path}: must be positive")
    return millis


def format_duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class NameFilter:
    """``{include|exclude: literal|prefix, name: ...}``."""

    action: str  # include | exclude
    pattern: str  # literal | prefix
    name: str

    def matches(self, name: str) -> bool:
        return name == self.name if self.pattern == "literal" else name.startswith(self.name)

    def to_json(self) -> dict[str, str]:
        return {self.action: self.pattern, "name": self.name}


def filters_select(filters: tuple[NameFilter, ...], name: str) -> bool:
    """An exclude always wins; anything no include matches is not selected."""
    included = False
    for f in filters:
        if f.matches(name):
            if f.action == "exclude":
                return False
            included = True
    return included


@dataclass(frozen=True)
class ClientSettings:
    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 52428800
    fetch_partition_max_bytes: int = 10485760
    # client.rack (KIP-392): fetch from a replica in this rack where the source says one is preferred
    rack: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    bootstrap_servers: tuple[str, ...]
    client: ClientSettings = ClientSettings()
    tls: TlsSettings | None = None
    sasl: SaslSettings | None = None


@dataclass(frozen=True)
class StartAt:
    kind: str  # earliest | latest | timestamp
    timestamp_ms: int = -1

    def to_json(self) -> Any:
        return {"timestamp_ms": self.timestamp_ms} if self.kind == "timestamp" else self.kind


@dataclass(frozen=True)
class TopicsSpec:
    filters: tuple[NameFilter, ...]
    sync_interval_ms: int = 5000
    start_at: StartAt = StartAt("earliest")
    synced_properties: tuple[str, ...] = DEFAULT_SYNCED_PROPERTIES


@dataclass(frozen=True)
class ConsumerOffsetsSpec:
    enabled: bool = True
    interval_ms: int = 5000
    groups: tuple[NameFilter, ...] = (NameFilter("include", "prefix", ""),)


@dataclass(frozen=True)
class AclsSpec:
    enabled: bool = True
    interval_ms: int = 30000


@dataclass(frozen=True)
class LinkSpec:
    name: str
    source: SourceSpec
    topics: TopicsSpec
    consumer_offsets: ConsumerOffsetsSpec = field(default_factory=ConsumerOffsetsSpec)
    acls: AclsSpec = field(default_factory=AclsSpec)

    def selects_topic(self, topic: str) -> bool:
        return not topic.startswith("__") and filters_select(self.topics.filters, topic)

    def selects_group(self, group: str) -> bool:
        return filters_select(self.consumer_offsets.groups, group)

    def to_json(self) -> dict[str, Any]:
        """The canonical document: what `describe` prints and what is stored."""
        return {
            "name": self.name,
            "source": {"bootstrap_servers": list(self.source.bootstrap_servers),
                       "client": {k: v for k, v in asdict(self.source.client).items()
                                  if k != "rack" or v is not None},
                       # Where the password is read from, never the password: this is what describe shows.
                       **({"tls": {"enabled": True, **{k: v for k, v in asdict(self.source.tls).items()
                                                       if v is not None}}} if self.source.tls else {}),
                       **({"sasl": {k: v for k, v in asdict(self.source.sasl).items() if v is not None}}
                          if self.source.sasl else {})},
            "topics": {"sync_interval": format_duration(self.topics.sync_interval_ms),
                       "filters": [f.to_json() for f in self.topics.filters],
                       "start_at": self.topics.start_at.to_json(),
                       "synced_properties": list(self.topics.synced_properties)},
            "consumer_offsets": {"enabled": self.consumer_offsets.enabled,
                                 "interval": format_duration(self.consumer_offsets.interval_ms),
                                 "groups": [f.to_json() for f in self.consumer_offsets.groups]},
            "acls": {"enabled": self.acls.enabled, "interval": format_duration(self.acls.interval_ms)},
        }


# --- parsing -------------------------------------------------------------


def _mapping(path: str, value: Any, allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{path}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise SpecError(f"{path}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})".lstrip("."))
    for key in required:
        if key not in value:
            raise SpecError(f"{path}.{key}: required".lstrip("."))
    return value


def _tls(value: Any) -> TlsSettings | None:
    try:
        return parse_tls_settings("source.tls", value)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def _sasl(value: Any) -> SaslSettings | None:
    try:
        return parse_sasl_settings("source.sasl", value)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected true or false, got {value!r}")
    return value


def _int(path: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}: expected an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{path}: must be at least {minimum}, got {value}")
    return value


def _filters(path: str, value: Any, allow_empty_name: bool) -> tuple[NameFilter, ...]:
    if not isinstance(value, list):
        raise SpecError(f"{path}: expected a list of filters")
    out = []
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        item = _mapping(p, item, {"include", "exclude", "name"}, {"name"})
        actions = [a for a in ("include", "exclude") if a in item]
        if len(actions) != 1:
            raise SpecError(f"{p}: expected exactly one of include or exclude")
        action = actions[0]
        pattern = item[action]
        if pattern not in ("literal", "prefix"):
            raise SpecError(f"{p}.{action}: expected literal or prefix, got {pattern!r}")
        name = item["name"]
        if not isinstance(name, str):
            raise SpecError(f"{p}.name: expected a string, got {name!r}")
        if not name and not (allow_empty_name and pattern == "prefix"):
            raise SpecError(f"{p}.name: must not be empty (use include: prefix with name \"\" to match all)")
        out.append(NameFilter(action, pattern, name))
    return tuple(out)


def _bootstrap(path: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        raise SpecError(f"{path}: expected a non-empty list of HOST:PORT")
    for i, server in enumerate(value):
        host, sep, port = str(server).rpartition(":")
        if not isinstance(server, str) or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SpecError(f"{path}[{i}]: expected HOST:PORT, got {server!r}")
    return tuple(value)


def parse_link_spec(doc: Any) -> LinkSpec:
    doc = _mapping("", doc, {"name", "source", "topics", "consumer_offsets", "acls"}, {"name", "source", "topics"})
    name = doc["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"name: expected 1-63 letters, digits, '.', '_' or '-', got {name!r}")

    src = _mapping("source", doc["source"], {"bootstrap_servers", "client", "tls", "sasl"}, {"bootstrap_servers"})
    client = ClientSettings()
    if "client" in src:
        c = _mapping("source.client", src["client"], set(ClientSettings.__dataclass_fields__))
        rack = c.get("rack")
        if rack is not None and (not isinstance(rack, str) or not rack.strip() or len(rack) > 255):
            raise SpecError(f"source.client.rack: expected the rack (availability zone) of this cluster's brokers "
                            f"as a non-empty string, got {rack!r}")
        client = ClientSettings(**{k: _int(f"source.client.{k}", v, 0 if k == "fetch_max_wait_ms" else 1)
                                   for k, v in c.items() if k != "rack"}, rack=rack)
    source = SourceSpec(_bootstrap("source.bootstrap_servers", src["bootstrap_servers"]), client,
                        _tls(src.get("tls")), _sasl(src.get("sasl")))

    t = _mapping("topics", doc["topics"], {"sync_interval", "filters", "start_at", "synced_properties"}, {"filters"})
    filters = _filters("topics.filters", t["filters"], allow_empty_name=True)
    if not any(f.action == "include" for f in filters):
        raise SpecError("topics.filters: needs at least one include filter (nothing would be shadowed)")
    for i, f in enumerate(filters):
        if f.pattern == "literal":
            try:
                validate_topic_name(f.name)
            except KafkaError as exc:
                raise SpecError(f"topics.filters[{i}].name: {exc}") from None
    start_at = StartAt("earliest")
    if "start_at" in t:
        value = t["start_at"]
        if value in ("earliest", "latest"):
            start_at = StartAt(value)
        elif isinstance(value, dict):
            v = _mapping("topics.start_at", value, {"timestamp_ms"}, {"timestamp_ms"})
            start_at = StartAt("timestamp", _int("topics.start_at.timestamp_ms", v["timestamp_ms"], 0))
        else:
            raise SpecError(f"topics.start_at: expected earliest, latest or {{timestamp_ms: N}}, got {value!r}")
    synced = DEFAULT_SYNCED_PROPERTIES
    if "synced_properties" in t:
        props = t["synced_properties"]
        if not isinstance(props, list) or not all(isinstance(p, str) and p for p in props):
            raise SpecError("topics.synced_properties: expected a list of topic config names")
        synced = DEFAULT_SYNCED_PROPERTIES if tuple(props) == _FORMER_DEFAULT_SYNCED_PROPERTIES else tuple(props)
    topics = TopicsSpec(filters, parse_duration_ms("topics.sync_interval", t.get("sync_interval", "5s")), start_at,
                        synced)

    offsets = ConsumerOffsetsSpec()
    if "consumer_offsets" in doc:
        o = _mapping("consumer_offsets", doc["consumer_offsets"], {"enabled", "interval", "groups"})
        offsets = ConsumerOffsetsSpec(
            _bool("consumer_offsets.enabled", o.get("enabled", True)),
            parse_duration_ms("consumer_offsets.interval", o.get("interval", "5s")),
            _filters("consumer_offsets.groups", o["groups"], allow_empty_name=True) if "groups" in o
            else ConsumerOffsetsSpec().groups)
    acls = AclsSpec()
    if "acls" in doc:
        a = _mapping("acls", doc["acls"], {"enabled", "interval"})
        acls = AclsSpec(_bool("acls.enabled", a.get("enabled", True)),
                        parse_duration_ms("acls.interval", a.get("interval", "30s")))
    return LinkSpec(name, source, topics, offsets, acls)
