"""JSON admin API for shadow links under /v1/shadow-links (documented in openapi.yaml)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from umbra.shadow.host import PeerUnavailable
from umbra.shadow.manager import LinkError

if TYPE_CHECKING:
    from umbra.admin.peers import ClusterPeers
    from umbra.cluster.metadata import MetadataStore
    from umbra.shadow.manager import ShadowLinkManager

OPENAPI = Path(__file__).with_name("openapi.yaml")
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LinkError(400, "the request body is not valid JSON") from None


def routes(app: web.Application, manager: ShadowLinkManager, metadata: MetadataStore,
           peers: ClusterPeers | None = None) -> None:
    """Every answer that changed metadata waits until the change is durable. On a cluster, changes are made
    by the controller: another broker forwards them there and relays the answer."""
    def guarded(fn: Callable[[web.Request, ShadowLinkManager], Awaitable[Any]], status: int = 200,
                changes: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            if changes and peers is not None and not manager.is_controller:
                return await _forward(request)
            version = metadata.version
            try:
                result = await fn(request, manager)
            except LinkError as exc:
                return _error(exc.status, str(exc))
            if metadata.version != version:
                await metadata.persisted()  # no answer before the change is on disk
            return web.json_response(result, status=status)

        return handler

    async def list_links(request: web.Request, m: ShadowLinkManager) -> Any:
        return {"links": m.list_links()}

    async def create(request: web.Request, m: ShadowLinkManager) -> Any:
        return await m.create(await _body(request))

    async def describe(request: web.Request, m: ShadowLinkManager) -> Any:
        return m.describe(request.match_info["name"])

    async def update(request: web.Request, m: ShadowLinkManager) -> Any:
        return await m.update(request.match_info["name"], await _body(request))

    async def delete(request: web.Request, m: ShadowLinkManager) -> Any:
        force = request.query.get("force", "false").lower() in ("1", "true", "yes")
        return await m.delete(request.match_info["name"], force)

    async def _forward(request: web.Request) -> web.Response:
        assert peers is not None
        controller = manager.control.view().controller
        if controller is None:
            return _error(503, "the cluster has no controller right now (etcd unreachable?); try again")
        body = await request.read()
        try:
            code, answer = await peers.request(controller, request.method, request.path_qs,
                                               json.loads(body) if body else None)
        except (PeerUnavailable, ValueError) as exc:
            return _error(503, f"the controller (broker {controller}) did not answer: {exc}")
        return web.json_response(answer, status=code)

    async def status(request: web.Request, m: ShadowLinkManager) -> Any:
        """Every live broker's part (its tasks and the partitions it leads), gathered here."""
        name = request.match_info["name"]
        others = []
        if peers is not None and request.query.get("local") is None:
            m.status(name)  # 404 before asking anyone
            path = f"/v1/shadow-links/{request.match_info['name']}/status?local=1"
            answers = await asyncio.gather(*(peers.call(node, path) for node in peers.others()),
                                           return_exceptions=True)
            for answer in answers:
                if isinstance(answer, dict):
                    others.append(answer)
                elif not isinstance(answer, PeerUnavailable) and isinstance(answer, BaseException):
                    raise answer
        if request.query.get("local") is not None:
            return m.local_status(name)
        return m.status(name, others)

    async def fence(request: web.Request, m: ShadowLinkManager) -> Any:
        """The controller's failover: stop this broker's replicators of the topics; the highest producer id
        in this broker's copies of them."""
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("link"), str) or not isinstance(
                body.get("topics"), list) or not all(isinstance(t, str) for t in body["topics"]):
            raise LinkError(400, 'expected {"link": name, "topics": [...]}')
        return {"max_producer_id": await m.settle_here(body["link"], body["topics"])}

    async def producer_id_barrier(request: web.Request, m: ShadowLinkManager) -> Any:
        m.broker.drop_producer_id_block()
        return {"dropped": True}

    async def pause(request: web.Request, m: ShadowLinkManager) -> Any:
        return await m.pause(request.match_info["name"])

    async def resume(request: web.Request, m: ShadowLinkManager) -> Any:
        return await m.resume(request.match_info["name"])

    async def failover(request: web.Request, m: ShadowLinkManager) -> Any:
        body = await _body(request) if request.can_read_body else {}
        if not isinstance(body, dict) or set(body) - {"topics", "all"}:
            raise LinkError(400, 'expected {"topics": [...]} or {"all": true}')
        topics = body.get("topics")
        if body.get("all") is True:
            if topics:
                raise LinkError(400, "give either topics or all, not both")
            return await m.failover(request.match_info["name"], None)
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise LinkError(400, 'expected {"topics": ["name", ...]} or {"all": true}')
        return await m.failover(request.match_info["name"], topics)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=OPENAPI.read_text(), content_type="application/yaml")

    base = "/v1/shadow-links"
    app.router.add_get(base, guarded(list_links))
    app.router.add_post(base, guarded(create, 201, changes=True))
    app.router.add_get(base + "/{name}", guarded(describe))
    app.router.add_put(base + "/{name}", guarded(update, changes=True))
    app.router.add_delete(base + "/{name}", guarded(delete, changes=True))
    app.router.add_get(base + "/{name}/status", guarded(status))
    app.router.add_post(base + "/{name}/pause", guarded(pause, changes=True))
    app.router.add_post(base + "/{name}/resume", guarded(resume, changes=True))
    app.router.add_post(base + "/{name}/failover", guarded(failover, 202, changes=True))
    # Between the brokers of a cluster (the controller's failover).
    app.router.add_post("/v1/internal/shadow/fence", guarded(fence))
    app.router.add_post("/v1/internal/shadow/producer-id-barrier", guarded(producer_id_barrier))
    app.router.add_get("/v1/openapi.yaml", openapi)
