"""JSON admin API for shadow links under /v1/shadow-links (documented in openapi.yaml)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from umbra.shadow.manager import LinkError

if TYPE_CHECKING:
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


def routes(app: web.Application, manager: ShadowLinkManager, metadata: MetadataStore) -> None:
    """Every answer that changed metadata waits until the change is durable."""
    def guarded(fn: Callable[[web.Request, ShadowLinkManager], Awaitable[Any]], status: int = 200) -> Handler:
        async def handler(request: web.Request) -> web.Response:
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

    async def status(request: web.Request, m: ShadowLinkManager) -> Any:
        return m.status(request.match_info["name"])

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
    app.router.add_post(base, guarded(create, 201))
    app.router.add_get(base + "/{name}", guarded(describe))
    app.router.add_put(base + "/{name}", guarded(update))
    app.router.add_delete(base + "/{name}", guarded(delete))
    app.router.add_get(base + "/{name}/status", guarded(status))
    app.router.add_post(base + "/{name}/pause", guarded(pause))
    app.router.add_post(base + "/{name}/resume", guarded(resume))
    app.router.add_post(base + "/{name}/failover", guarded(failover, 202))
    app.router.add_get("/v1/openapi.yaml", openapi)
