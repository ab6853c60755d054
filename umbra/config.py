"""Broker configuration: typed, validated, from CLI flags and/or a YAML file.

Every key is refused with a one-line error naming it when it is unknown or its
value is bad; :class:`ConfigError` carries that line.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umbra.client.settings import SaslSettings as ClientSaslSettings
from umbra.client.settings import TlsSettings as ClientTlsSettings
from umbra.client.settings import parse_sasl_settings, parse_tls_settings
from umbra.cluster.control import parse_endpoints


class ConfigError(Exception):
    """A bad configuration value; the message is one line naming the key."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(key: str, value: Any) -> HostPort:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host:
        raise ConfigError(f"{key}: missing host in {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{key}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is outside 0..65535")
    return HostPort(host, port)


class SecurityProtocol(enum.StrEnum):
    """Kafka's ``security.protocol`` of a listener."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class ClientAuth(enum.StrEnum):
    """Kafka's ``ssl.client.auth``: whether a TLS listener asks clients for a certificate."""

    NONE = "none"
    REQUESTED = "requested"  # asked for; a client without one connects as User:ANONYMOUS
    REQUIRED = "required"  # a client without a certificate the CA signed cannot connect


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class TlsSettings:
    """A TLS listener's certificate, key, and how it checks client certificates (mTLS)."""

    cert_file: Path  # PEM: the server certificate, then any intermediates
    key_file: Path  # PEM, unencrypted
    ca_file: Path | None = None  # PEM: the CAs that sign client certificates (needed unless client_auth is none)
    client_auth: ClientAuth = ClientAuth.NONE


@dataclass(frozen=True)
class ListenerConfig:
    """One Kafka listener: where it binds, what clients are told, and how they authenticate."""

    name: str
    address: HostPort
    advertise: HostPort | None = None
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanisms: tuple[str, ...] = ()
    tls: TlsSettings | None = None


SHORTHAND_LISTENER = "PLAINTEXT"  # the name of the one listener `listen` (and `advertise`) make


@dataclass(frozen=True)
class InterBrokerConfig:
    """How followers reach leaders (on a cluster): the listener, and the client TLS and SASL settings it needs."""

    listener: str | None = None  # [inter.broker.listener.name]; None: the first listener
    tls: ClientTlsSettings | None = None
    sasl: ClientSaslSettings | None = None


@dataclass(frozen=True)
class AuthorizationConfig:
    """ACL enforcement (Kafka's StandardAuthorizer): off by default, every request is allowed."""

    enabled: bool = False
    super_users: tuple[str, ...] = ()  # [super.users]: principals such as "User:admin", allowed everything
    allow_everyone_if_no_acl_found: bool = False  # [allow.everyone.if.no.acl.found]


@dataclass(frozen=True)
class BrokerConfig:
    """Everything a broker is started with. Field names are the YAML keys (and --flag-names)."""

    data_dir: Path = Path("./data")
    node_id: int = 1
    listen: HostPort = HostPort("127.0.0.1", 9092)
    advertise: HostPort | None = None
    # Every Kafka listener. Empty given: the one PLAINTEXT listener of listen and advertise (the shorthand);
    # given: listen and advertise are its first listener's.
    listeners: tuple[ListenerConfig, ...] = ()
    admin_listen: HostPort = HostPort("127.0.0.1", 9644)
    # The admin API over https: cert_file and key_file (ca_file and client_auth to take client certificates).
    admin_tls: TlsSettings | None = None
    # Every admin endpoint but /v1/health needs HTTP Basic credentials of a SCRAM user or a client certificate;
    # with authorization enabled, reads need DESCRIBE and changes ALTER on the cluster.
    admin_authentication: bool = False
    cluster_id: str | None = None
    # The control plane: etcd endpoints (http://HOST:PORT, comma-separated or a YAML list); none = this broker
    # alone, with its local metadata store. With etcd, cluster_id is required.
    etcd: str | None = None
    rack: str | None = None  # [broker.rack]
    broker_session_timeout_ms: int = 9000  # [broker.session.timeout.ms]: a broker silent this long is dead
    replica_lag_time_max_ms: int = 30000  # [replica.lag.time.max.ms]: a follower behind this long leaves the ISR
    # Requests larger than this close the connection (Kafka: socket.request.max.bytes).
    max_request_bytes: int = 104857600
    # Request bytes buffered before they are handled, over every connection; a connection that needs more
    # stops reading until there is room (Kafka: queued.max.request.bytes). At least max_request_bytes.
    queued_max_request_bytes: int = 268435456
    max_connections: int = 10000  # [max.connections]: a connection over it is closed at once
    max_connections_per_ip: int = 1000  # [max.connections.per.ip]
    authorization: AuthorizationConfig = AuthorizationConfig()  # ACLs enforced on every Kafka API (when enabled)
    inter_broker: InterBrokerConfig = InterBrokerConfig()  # the listener and credentials of replication
    auto_create_topics: bool = True
    num_partitions: int = 1
    default_replication_factor: int = 1
    # Log defaults (Kafka broker names in brackets); topics may override them.
    log_segment_bytes: int = 1073741824  # [log.segment.bytes]
    log_segment_ms: int = 604800000  # [log.roll.ms]
    log_retention_ms: int = 604800000  # [log.retention.ms]
    log_retention_bytes: int = -1  # [log.retention.bytes]
    log_retention_check_interval_ms: int = 300000  # [log.retention.check.interval.ms]
    log_flush_offset_checkpoint_interval_ms: int = 60000  # [log.flush.offset.checkpoint.interval.ms]
    message_max_bytes: int = 1048588  # [message.max.bytes]
    log_message_timestamp_type: str = "CreateTime"  # [log.message.timestamp.type]
    # Compaction of topics with cleanup.policy=compact (and __consumer_offsets).
    log_cleaner_enabled: bool = True  # [log.cleaner.enable]
    log_cleaner_interval_ms: int = 15000  # [log.cleaner.backoff.ms]: pause between cleaner passes
    offsets_topic_segment_bytes: int = 104857600  # [offsets.topic.segment.bytes]
    offsets_topic_replication_factor: int = 3  # [offsets.topic.replication.factor] (on a cluster)
    auto_leader_rebalance_enable: bool = True  # [auto.leader.rebalance.enable]: leaders back to preferred replicas
    leader_imbalance_check_interval_ms: int = 300000  # [leader.imbalance.check.interval.seconds], in ms
    # Flush policy. Writes reach the OS before any acknowledgement, so a process
    # crash (kill -9) loses nothing; fsync protects against machine crashes.
    log_flush_interval_messages: int = 9223372036854775807  # [log.flush.interval.messages]
    log_flush_interval_ms: int = 9223372036854775807  # [log.flush.interval.ms]
    fsync_before_ack: bool = False  # fsync the partition before acknowledging acks=all produce
    # Serve large Fetch record sets from the segment files with os.sendfile (no copy through Python).
    fetch_sendfile: bool = True
    # Consumer groups.
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    # The consumer group protocol (KIP-848): what the coordinator tells members, and when it fences them.
    group_consumer_heartbeat_interval_ms: int = 5000  # [group.consumer.heartbeat.interval.ms]
    group_consumer_session_timeout_ms: int = 45000  # [group.consumer.session.timeout.ms]
    # KIP-848's online migration of non-empty groups between the classic and the consumer protocol:
    # disabled, upgrade, downgrade or bidirectional.  [group.consumer.migration.policy]
    group_consumer_migration_policy: str = "bidirectional"
    offsets_retention_minutes: int = 10080
    log_level: str = "INFO"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.listeners:
            object.__setattr__(self, "listeners", (ListenerConfig(SHORTHAND_LISTENER, self.listen, self.advertise),))
        else:  # what reads listen and advertise (the first listener) reads the first listener's
            object.__setattr__(self, "listen", self.listeners[0].address)
            object.__setattr__(self, "advertise", self.listeners[0].advertise)

    def inter_broker_listener(self) -> ListenerConfig | None:
        """The listener brokers replicate over (None if ``inter_broker.listener`` names none)."""
        wanted = self.inter_broker.listener
        return next((item for item in self.listeners if wanted is None or item.name == wanted), None)

    @property
    def advertised(self) -> HostPort:
        """The first listener's advertised address (the port is 0 until bound when it listens on port 0)."""
        return self.advertise or self.listen


_FIELDS = {f.name: f for f in dataclasses.fields(BrokerConfig) if f.name != "extra"}
_LISTENER_KEYS = ("name", "address", "advertise", "security_protocol", "sasl_mechanisms", "tls")
_TLS_KEYS = ("cert_file", "key_file", "ca_file", "client_auth")
_LISTENER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
_TIMESTAMP_TYPES = {"CreateTime", "LogAppendTime"}
_MIGRATION_POLICIES = ("disabled", "upgrade", "downgrade", "bidirectional")  # Kafka's, case-insensitive


def _coerce(key: str, value: Any) -> Any:
    if key == "listeners":
        return parse_listeners(value)
    if key == "authorization":
        return parse_authorization(value)
    if key == "inter_broker":
        return parse_inter_broker(value)
    if key == "admin_tls":
        return _parse_tls("admin_tls", SecurityProtocol.SSL, value)
    f = _FIELDS[key]
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind in ("HostPort", "HostPort | None"):
        if value is None and kind.endswith("None"):
            return None
        return parse_host_port(key, value)
    if kind == "Path":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a directory path, got {value!r}")
        return Path(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        return number
    if kind in ("str", "str | None"):
        if value is None and kind.endswith("None"):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {kind}")


def _check_ranges(config: BrokerConfig) -> None:
    positive = ("max_request_bytes", "num_partitions", "default_replication_factor", "log_segment_bytes",
                "log_segment_ms", "log_retention_check_interval_ms", "log_flush_offset_checkpoint_interval_ms",
                "message_max_bytes",
                "log_flush_interval_messages", "log_flush_interval_ms", "group_min_session_timeout_ms",
                "group_max_session_timeout_ms", "group_consumer_heartbeat_interval_ms",
                "group_consumer_session_timeout_ms", "offsets_retention_minutes", "log_cleaner_interval_ms",
                "offsets_topic_segment_bytes", "queued_max_request_bytes", "max_connections",
                "max_connections_per_ip", "broker_session_timeout_ms", "replica_lag_time_max_ms",
                "offsets_topic_replication_factor", "leader_imbalance_check_interval_ms")
    for key in positive:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {getattr(config, key)}")
    for key in ("log_retention_ms", "log_retention_bytes"):
        if getattr(config, key) < -1:
            raise ConfigError(f"{key}: must be -1 (unlimited) or >= 0, got {getattr(config, key)}")
    if config.queued_max_request_bytes < config.max_request_bytes:
        raise ConfigError(f"queued_max_request_bytes: must be at least max_request_bytes ({config.max_request_bytes}), "
                          f"got {config.queued_max_request_bytes}")
    if config.node_id < 0:
        raise ConfigError(f"node_id: must be >= 0, got {config.node_id}")
    if config.group_initial_rebalance_delay_ms < 0:
        raise ConfigError("group_initial_rebalance_delay_ms: must be >= 0")
    if config.group_consumer_migration_policy.lower() not in _MIGRATION_POLICIES:
        raise ConfigError(f"group_consumer_migration_policy: expected one of {', '.join(_MIGRATION_POLICIES)}, "
                          f"got {config.group_consumer_migration_policy!r}")
    if config.log_message_timestamp_type not in _TIMESTAMP_TYPES:
        raise ConfigError(f"log_message_timestamp_type: expected CreateTime or LogAppendTime, got {config.log_message_timestamp_type!r}")
    if config.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {sorted(_LOG_LEVELS)}, got {config.log_level!r}")


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> BrokerConfig:
    """Merge file values with command-line flags (flags win) and validate every key."""
    values: dict[str, Any] = {}
    for source in (file_values, flag_values):
        for raw_key, value in source.items():
            key = str(raw_key).replace("-", "_").replace(".", "_")
            if key not in _FIELDS:
                raise ConfigError(f"unknown setting {raw_key!r}")
            if key == "etcd" and isinstance(value, list):
                value = ",".join(str(v) for v in value)
            values[key] = _coerce(key, value)
    if "listeners" in values and ("listen" in values or "advertise" in values):
        given = "listen" if "listen" in values else "advertise"
        raise ConfigError(f"{given}: give either listen (and advertise), the one-PLAINTEXT-listener shorthand, "
                          "or listeners, not both")
    config = BrokerConfig(**values)
    _check_ranges(config)
    _check_control_plane(config)
    _check_listener_ports(config)
    return config


def _check_control_plane(config: BrokerConfig) -> None:
    if config.etcd is None:
        return
    try:
        parse_endpoints(config.etcd)
    except ValueError as exc:
        raise ConfigError(f"etcd: {exc}") from None
    if not config.cluster_id:
        raise ConfigError("cluster_id: required with etcd (every broker of a cluster gives the same one)")
    _check_inter_broker(config)


def _check_inter_broker(config: BrokerConfig) -> None:
    """The listener followers fetch from leaders over, and the credentials it needs (Kafka's
    inter.broker.listener.name, with the broker's own client settings)."""
    inter = config.inter_broker
    listener = config.inter_broker_listener()
    if listener is None:
        names = ", ".join(item.name for item in config.listeners)
        raise ConfigError(f"inter_broker.listener: no listener is called {inter.listener!r} (listeners: {names})")
    protocol = listener.security_protocol
    if protocol.uses_tls and inter.tls is None:
        raise ConfigError(f"inter_broker.tls: required, listener {listener.name} is {protocol} (ca_file: the CA of "
                          "the brokers' certificates)")
    if protocol.uses_sasl:
        if inter.sasl is None:
            raise ConfigError(f"inter_broker.sasl: required, listener {listener.name} is {protocol} (a user with "
                              "CLUSTER_ACTION on the cluster, or a super user)")
        if inter.sasl.mechanism not in listener.sasl_mechanisms:
            raise ConfigError(f"inter_broker.sasl.mechanism: {inter.sasl.mechanism} is not one listener "
                              f"{listener.name} enables ({', '.join(listener.sasl_mechanisms)})")


def _check_listener_ports(config: BrokerConfig) -> None:
    admin = config.admin_listen.port
    for i, listener in enumerate(config.listeners):
        if admin != 0 and listener.address.port == admin:
            raise ConfigError(f"listeners[{i}].address: port {admin} is admin_listen's too")


def parse_listeners(value: Any) -> tuple[ListenerConfig, ...]:
    """The ``listeners`` list, each entry checked; errors name the entry and key (``listeners[1].tls``)."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"listeners: expected a non-empty list of listeners, got {value!r}")
    listeners = tuple(_parse_listener(f"listeners[{i}]", item) for i, item in enumerate(value))
    names: dict[str, int] = {}
    ports: dict[int, int] = {}
    for i, listener in enumerate(listeners):
        other = names.setdefault(listener.name.upper(), i)
        if other != i:
            raise ConfigError(f"listeners[{i}].name: {listener.name!r} is listeners[{other}]'s name too")
        port = listener.address.port
        if port != 0 and ports.setdefault(port, i) != i:
            raise ConfigError(f"listeners[{i}].address: port {port} is listeners[{ports[port]}]'s port too")
    return listeners


def _parse_listener(path: str, item: Any) -> ListenerConfig:
    if not isinstance(item, dict):
        raise ConfigError(f"{path}: expected a mapping with name, address and security_protocol, got {item!r}")
    for key in item:
        if key not in _LISTENER_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (expected {', '.join(_LISTENER_KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not _LISTENER_NAME.fullmatch(name):
        raise ConfigError(f"{path}.name: expected 1-64 letters, digits, _ or -, got {name!r}")
    if "address" not in item:
        raise ConfigError(f"{path}.address: required (HOST:PORT)")
    address = parse_host_port(f"{path}.address", item["address"])
    advertise = parse_host_port(f"{path}.advertise", item["advertise"]) if item.get("advertise") is not None \
        else None
    protocol = _parse_protocol(path, item.get("security_protocol", name if name in SecurityProtocol.__members__
                                              else None))
    mechanisms = _parse_mechanisms(path, protocol, item.get("sasl_mechanisms"))
    tls = _parse_tls(f"{path}.tls", protocol, item.get("tls"))
    return ListenerConfig(name, address, advertise, protocol, mechanisms, tls)


def _parse_protocol(path: str, value: Any) -> SecurityProtocol:
    expected = ", ".join(p.value for p in SecurityProtocol)
    if value is None:
        raise ConfigError(f"{path}.security_protocol: required ({expected})")
    try:
        return SecurityProtocol(value)
    except ValueError:
        raise ConfigError(f"{path}.security_protocol: expected one of {expected}, got {value!r}") from None


def _parse_mechanisms(path: str, protocol: SecurityProtocol, value: Any) -> tuple[str, ...]:
    key = f"{path}.sasl_mechanisms"
    if not protocol.uses_sasl:
        if value is not None:
            raise ConfigError(f"{key}: only for SASL_PLAINTEXT and SASL_SSL listeners, not {protocol}")
        return ()
    if value is None:
        raise ConfigError(f"{key}: required on a {protocol} listener (one or more of {', '.join(SASL_MECHANISMS)})")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: expected a non-empty list of {', '.join(SASL_MECHANISMS)}, got {value!r}")
    for mechanism in value:
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"{key}: expected {', '.join(SASL_MECHANISMS)}, got {mechanism!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}: {value!r} names a mechanism twice")
    return tuple(value)


def _parse_tls(path: str, protocol: SecurityProtocol, value: Any) -> TlsSettings | None:
    if not protocol.uses_tls:
        if value is not None:
            raise ConfigError(f"{path}: only for SSL and SASL_SSL listeners, not {protocol}")
        return None
    if value is None:
        raise ConfigError(f"{path}: required on a {protocol} listener (cert_file and key_file)")
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping with cert_file and key_file, got {value!r}")
    for key in value:
        if key not in _TLS_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (expected {', '.join(_TLS_KEYS)})")
    cert_file = _readable_file(f"{path}.cert_file", value.get("cert_file"))
    key_file = _readable_file(f"{path}.key_file", value.get("key_file"))
    ca_file = _readable_file(f"{path}.ca_file", value["ca_file"]) if value.get("ca_file") is not None else None
    client_auth_text = value.get("client_auth", ClientAuth.NONE.value)
    try:
        client_auth = ClientAuth(client_auth_text)
    except ValueError:
        raise ConfigError(f"{path}.client_auth: expected none, requested or required, got {client_auth_text!r}") \
            from None
    if client_auth is not ClientAuth.NONE and ca_file is None:
        raise ConfigError(f"{path}.ca_file: required with client_auth {client_auth} (the CA that signs client "
                          "certificates)")
    settings = TlsSettings(cert_file, key_file, ca_file, client_auth)
    # Imported here: umbra.security.tls imports this module's types.
    from umbra.security.tls import TlsSetupError, server_context

    try:
        server_context(settings)
    except TlsSetupError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return settings


def _readable_file(key: str, value: Any) -> Path:
    if value is None:
        raise ConfigError(f"{key}: required (a PEM file)")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a file path, got {value!r}")
    path = Path(value)
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    return path


_AUTHORIZATION_KEYS = ("enabled", "super_users", "allow_everyone_if_no_acl_found")


def parse_authorization(value: Any) -> AuthorizationConfig:
    """The ``authorization`` mapping; errors name the key (``authorization.super_users[1]``)."""
    if not isinstance(value, dict):
        raise ConfigError(f"authorization: expected a mapping with {', '.join(_AUTHORIZATION_KEYS)}, got {value!r}")
    for key in value:
        if key not in _AUTHORIZATION_KEYS:
            raise ConfigError(f"authorization: unknown key {key!r} (expected {', '.join(_AUTHORIZATION_KEYS)})")
    flags = {}
    for key in ("enabled", "allow_everyone_if_no_acl_found"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            raise ConfigError(f"authorization.{key}: expected true or false, got {flag!r}")
        flags[key] = flag
    users = value.get("super_users") or []
    if not isinstance(users, list):
        raise ConfigError(f"authorization.super_users: expected a list of principals such as User:admin, got {users!r}")
    for i, user in enumerate(users):
        principal_type, colon, name = user.partition(":") if isinstance(user, str) else ("", "", "")
        if not colon or not principal_type or not name:
            raise ConfigError(f"authorization.super_users[{i}]: expected a principal Type:name such as User:admin, "
                              f"got {user!r}")
    return AuthorizationConfig(flags["enabled"], tuple(users), flags["allow_everyone_if_no_acl_found"])


def parse_inter_broker(value: Any) -> InterBrokerConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"inter_broker: expected a mapping with listener, tls and sasl, got {value!r}")
    for key in value:
        if key not in ("listener", "tls", "sasl"):
            raise ConfigError(f"inter_broker: unknown key {key!r} (expected listener, tls, sasl)")
    listener = value.get("listener")
    if listener is not None and not isinstance(listener, str):
        raise ConfigError(f"inter_broker.listener: expected a listener's name, got {listener!r}")
    try:
        return InterBrokerConfig(listener, parse_tls_settings("inter_broker.tls", value.get("tls")),
                                 parse_sasl_settings("inter_broker.sasl", value.get("sasl")))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def setting_names() -> list[str]:
    return sorted(_FIELDS)
