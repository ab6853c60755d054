"""The composition root: every part of a broker process is built and wired here, and nowhere else.

The broker core (storage, metadata, the Kafka listener) knows nothing of the layers around it. The group
coordinator, the shadow-link manager and the admin server are built here, each handed what it needs; the
broker reaches the shadow layer only through :class:`umbra.server.ports.TopicGuard`. Start-up and shutdown
run in one order, written once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl

from umbra.admin.auth import AdminAccess, AdminAuthenticator
from umbra.admin.http import AdminServer
from umbra.admin.peers import ClusterPeers
from umbra.cluster.control import (
    BrokerInfo,
    ControlPlane,
    ControlPlaneError,
    LocalControlPlane,
    mark_cluster_data_dir,
    parse_endpoints,
)
from umbra.config import BrokerConfig
from umbra.errors import KafkaError, TopicAlreadyExists
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.persistence import offsets_topic_configs
from umbra.security.acls import AclOperation, ResourceType
from umbra.security.tls import server_context
from umbra.server.authz import CLUSTER_NAME
from umbra.server.broker import OFFSETS_TOPIC, Broker
from umbra.server.connection import KafkaConnection
from umbra.server.handlers.scram_users import current_users
from umbra.shadow.manager import ShadowLinkManager
from umbra.tasks import cancel_and_wait

log = logging.getLogger("umbra.broker")
ADMIN_TOKEN_DOCUMENT = "admin_token"
OFFSETS_TOPIC_WAIT_S = 10.0


class BrokerApp:
    """One broker process: built by the constructor, run by :meth:`start` and :meth:`stop`."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.broker = Broker(config)
        self.control = control_plane(config, self.broker.metadata.cluster_id)
        self.broker.control = self.control
        self.control.subscribe_topics(self.broker.apply_cluster_topics)
        self.control.subscribe_document("acls", self.broker.apply_cluster_acls)
        self.control.subscribe_document("broker_configs", self.broker.apply_cluster_broker_configs)
        self.peers = ClusterPeers(self.control, ssl_context=admin_client_context(config),
                                  token=self._internal_token) if self.control.clustered else None
        self.shadow = ShadowLinkManager(self.broker, control=self.control, peers=self.peers)
        authenticator = AdminAuthenticator(AdminAccess(
            users=lambda: current_users(self.broker), authorized=self._admin_authorized,
            internal_token=self._internal_token)) if config.admin_authentication else None
        self.admin = AdminServer(self.broker, self.shadow, self.control, config.admin_listen.host,
                                 config.admin_listen.port, self.peers, authenticator=authenticator,
                                 ssl_context=server_context(config.admin_tls) if config.admin_tls else None)
        self.groups: GroupCoordinator | None = None  # needs the offsets log, opened by start()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        broker = self.broker
        broker.open_logs()
        offsets = broker.offsets_log(offsets_topic_configs(self.config.offsets_topic_segment_bytes))
        self.groups = GroupCoordinator(offsets, self.config, broker.notifier,
                                       appender=broker.append_offsets if self.control.clustered else None)
        await self.groups.start()
        broker.groups = self.groups
        broker.topic_guard = self.shadow
        await broker.serve(lambda listener: KafkaConnection(broker, listener))
        await self.admin.start()
        host, port = broker.advertised_endpoint()
        await self.control.start(BrokerInfo(broker.node_id, self.config.rack, f"{host}:{port}",
                                            f"{self.admin.scheme}://{self.admin.host}:{self.admin.port}",
                                            listeners=broker.listeners.advertised_all()))
        if self.control.clustered and self.config.admin_authentication:
            await self._ensure_internal_token()  # before the links: their status and failover call the peers
        # After the control plane: on a cluster the links and shadow-topic states are read from etcd first
        # (a broker that was down during a failover comes back failed over).
        await self.shadow.start()
        if self.control.clustered:
            self._tasks.append(asyncio.create_task(self._create_offsets_topic(), name="offsets-topic"))
        self.admin.ready = True
        listeners = ",".join(f"{name}://{address}" for name, address in broker.listeners.addresses().items())
        log.info("umbra broker %d ready: kafka=%s:%d listeners=%s admin=%s:%d data=%s", broker.node_id,
                 self.config.listen.host, broker.listen_port, listeners, self.admin.host, self.admin.port,
                 self.config.data_dir)

    def _admin_authorized(self, principal: str, host: str, operation: AclOperation) -> bool:
        authorizer = self.broker.authorizer  # None: authorization disabled, every authenticated caller may
        return authorizer is None or authorizer.allowed(principal, host, operation, ResourceType.CLUSTER,
                                                        CLUSTER_NAME)

    def _internal_token(self) -> str | None:
        """The token brokers of this cluster send each other's admin API (a cluster document in etcd)."""
        document = self.control.document(ADMIN_TOKEN_DOCUMENT) if self.control.clustered else None
        token = document.get("token") if isinstance(document, dict) else None
        return token if isinstance(token, str) else None

    async def _ensure_internal_token(self) -> None:
        def change(current: object) -> object:
            return current if isinstance(current, dict) and current.get("token") else {
                "token": secrets.token_urlsafe(32)}

        await self.control.update_document(ADMIN_TOKEN_DOCUMENT, change)

    async def _create_offsets_topic(self) -> None:
        """On a cluster, the controller creates ``__consumer_offsets`` once ``offsets_topic_replication_factor``
        brokers are alive (or, after ``OFFSETS_TOPIC_WAIT_S``, with as many as there are); until then
        FindCoordinator answers COORDINATOR_NOT_AVAILABLE and clients retry."""
        configs = offsets_topic_configs(self.config.offsets_topic_segment_bytes)
        started = asyncio.get_running_loop().time()
        while True:
            existing = self.broker.metadata.topic(OFFSETS_TOPIC)
            if existing is not None and existing.assignments:
                return
            alive = len(self.control.view().alive_brokers())
            waited = asyncio.get_running_loop().time() - started
            wanted = self.config.offsets_topic_replication_factor
            if self.control.is_controller() and alive and (alive >= wanted or waited >= OFFSETS_TOPIC_WAIT_S):
                try:
                    await self.control.create_topic(OFFSETS_TOPIC, 1, configs, min(wanted, alive), internal=True)
                    log.info("created %s with replication factor %d", OFFSETS_TOPIC, min(wanted, alive))
                except TopicAlreadyExists:
                    pass
                except (KafkaError, ControlPlaneError) as exc:
                    log.warning("could not create %s yet: %s", OFFSETS_TOPIC, exc)
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        log.info("shutting down")
        await cancel_and_wait(self._tasks)
        # Controlled shutdown: leaderships move to other in-sync replicas while this broker still serves.
        await self.control.prepare_shutdown(timeout_s=max(10.0, 2 * self.config.broker_session_timeout_ms / 1000))
        await self.control.stop()  # first: the controllership moves on while this broker winds down
        await self.broker.stop_serving()
        await self.shadow.stop()
        if self.peers is not None:
            await self.peers.close()
        if self.groups is not None:
            await self.groups.stop()
        await self.admin.stop()
        self.broker.close_storage()
        log.info("shutdown complete")


def control_plane(config: BrokerConfig, cluster_id: str) -> ControlPlane:
    """etcd with ``--etcd``, else this broker alone."""
    if config.etcd is None:
        return LocalControlPlane(cluster_id, config.node_id, config.data_dir)  # its documents: files in data_dir
    # Imported only here: the etcd client loads grpc, which a single broker never needs.
    from umbra.cluster.etcd import EtcdControlPlane

    mark_cluster_data_dir(config.data_dir, config.etcd, cluster_id)

    return EtcdControlPlane(parse_endpoints(config.etcd), cluster_id, config.node_id,
                            config.broker_session_timeout_ms,
                            leader_rebalance_interval_ms=(config.leader_imbalance_check_interval_ms
                                                          if config.auto_leader_rebalance_enable else None))


def admin_client_context(config: BrokerConfig) -> ssl.SSLContext | None:
    """How a broker calls its peers' https admin APIs: trusting ``admin_tls.ca_file`` (else the system's CAs) and
    showing its own admin certificate, for peers that take client certificates."""
    tls = config.admin_tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context
