"""Admin HTTP server (aiohttp): /v1/health, /metrics, /v1/storage, and the shadow-link API."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from umbra.admin import shadow_api
from umbra.cluster.control import ControlPlaneError, balanced_targets, partition_health
from umbra.errors import KafkaError, KafkaStorageError

if TYPE_CHECKING:
    from umbra.admin.auth import AdminAuthenticator
    from umbra.admin.peers import ClusterPeers
    from umbra.admin.ports import AdminHost
    from umbra.cluster.control import ControlPlane
    from umbra.shadow.manager import ShadowLinkManager

log = logging.getLogger("umbra.admin")


class AdminServer:
    def __init__(self, broker: AdminHost, shadow: ShadowLinkManager, control: ControlPlane, host: str,
                 port: int, peers: ClusterPeers | None = None, *, ssl_context: ssl.SSLContext | None = None,
                 authenticator: AdminAuthenticator | None = None) -> None:
        self.broker = broker
        self.ssl_context = ssl_context  # https when set
        self.scheme = "https" if ssl_context is not None else "http"
        self.shadow = shadow
        self.control = control
        self.host, self.port = host, port  # the port actually bound once started (for port 0)
        # False until the broker has started: registered in its cluster, shadow links loaded. The admin API binds
        # first (the cluster learns its address), so /v1/health answers 503 until then (a readiness probe).
        self.ready = False
        self.app = web.Application(middlewares=[authenticator.middleware] if authenticator is not None else [])
        self.app.router.add_get("/v1/health", self.health)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/v1/storage", self.storage)
        self.app.router.add_get("/v1/cluster", self.cluster)
        self.app.router.add_post("/v1/cluster/rebalance", self.rebalance)
        self.app.router.add_post("/v1/storage/recover", self.recover_storage)
        shadow_api.routes(self.app, shadow, broker.metadata, peers)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        server: Any = site._server  # the bound socket, for port 0 (an asyncio.Server)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        b = self.broker
        if not self.ready:
            return web.json_response({"status": "starting", "node_id": b.node_id}, status=503)
        return web.json_response({"status": "ok", "node_id": b.node_id, "cluster_id": b.metadata.cluster_id,
                                  "topics": len(b.metadata.topics()), "listeners": b.listeners.addresses()})

    async def cluster(self, request: web.Request) -> web.Response:
        """The cluster as this broker sees it: members, the controller, and the partitions' health."""
        view = self.control.view()
        health = partition_health(self.broker.metadata.topics(), {b.node_id for b in view.alive_brokers()}
                                  if view.brokers else None)
        offline = health.offline + len(self._offline())  # no live leader, or a storage error here
        return web.json_response({
            "cluster_id": view.cluster_id, "controller": view.controller, "controller_epoch": view.controller_epoch,
            "control_plane_reachable": view.reachable, "node_id": self.broker.node_id,
            "brokers": [b.to_json() for b in view.brokers],
            "partitions": {"total": health.total, "under_replicated": len(health.under_replicated),
                           "offline": offline},
            "under_replicated": health.under_replicated})

    async def rebalance(self, request: web.Request) -> web.Response:
        """Spread every topic's replicas and leaders evenly over the live brokers (brokers that joined later
        get their share), by reassignments through the controller. Asked of another broker, it names the
        controller."""
        if not self.control.clustered:
            return web.json_response({"error": "a single broker has nothing to rebalance"}, status=400)
        try:
            view = await self.control.refresh()  # a broker that joined since the last poll gets its share too
        except ControlPlaneError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        if not self.control.is_controller():
            controller = next((b for b in view.brokers if b.node_id == view.controller), None)
            where = f" at {controller.admin_address}" if controller is not None else ""
            return web.json_response({"error": f"ask the controller (broker {view.controller}{where})"},
                                     status=409)
        alive = sorted(b.node_id for b in view.alive_brokers())
        moves: list[dict[str, Any]] = []
        for topic in self.broker.metadata.topics():
            for index, target in balanced_targets(topic, alive, {b.node_id: b.rack for b in view.brokers}).items():
                try:
                    await self.control.reassign(topic.name, index, target)
                except KafkaError as exc:
                    return web.json_response({"error": f"{topic.name}-{index}: {exc.message}", "moves": moves},
                                             status=409)
                moves.append({"topic": topic.name, "partition": index, "replicas": list(target)})
        return web.json_response({"moves": moves, "brokers": alive})

    def _offline(self) -> list[dict[str, Any]]:
        return [{"topic": log_.topic, "partition": log_.partition, "reason": log_.offline_reason}
                for log_ in self.broker.logs.all_logs() if log_.offline_reason is not None]

    async def storage(self, request: web.Request) -> web.Response:
        """The partitions a storage error took offline (disk full, I/O errors), with the reason."""
        return web.json_response({"offline": self._offline()})

    async def recover_storage(self, request: web.Request) -> web.Response:
        """Bring offline partitions back from their files (on a worker thread: recovery reads segments).
        Those that still fail stay offline, with the new reason."""
        recovered = []
        for log_ in [log_ for log_ in self.broker.logs.all_logs() if log_.offline_reason is not None]:
            try:
                await asyncio.to_thread(log_.bring_online)
            except KafkaStorageError:
                continue
            self.broker.notifier.notify((log_.topic, log_.partition))
            recovered.append({"topic": log_.topic, "partition": log_.partition, "log_end_offset": log_.log_end_offset})
        return web.json_response({"recovered": recovered, "offline": self._offline()})

    async def metrics(self, request: web.Request) -> web.Response:
        metrics = self.broker.metrics
        metrics.partitions.set(len(self.broker.logs.all_logs()))
        metrics.offline_partitions.set(sum(log_.offline_reason is not None for log_ in self.broker.logs.all_logs()))
        metrics.connections.set(self.broker.connection_count)
        metrics.connections_refused.set(self.broker.connection_limits.refused)
        metrics.request_memory.set(self.broker.request_memory.used)
        metrics.request_memory_waits.set(self.broker.request_memory.waits)
        for log_ in self.broker.logs.all_logs():
            metrics.log_end_offset.labels(log_.topic, str(log_.partition)).set(log_.log_end_offset)
        view = self.control.view()
        health = partition_health(self.broker.metadata.topics(), {b.node_id for b in view.alive_brokers()}
                                  if view.brokers else None)
        metrics.under_replicated_partitions.set(len(health.under_replicated))
        metrics.cluster_brokers_alive.set(len(view.alive_brokers()))
        metrics.is_controller.set(1 if self.control.is_controller() else 0)
        metrics.controller_changes.set(view.controller_changes)
        metrics.control_plane_reachable.set(1 if view.reachable else 0)
        for link in list(self.shadow.links.values()):
            link.refresh_metrics()
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
