"""ApiVersions (18): advertise exactly the versions this broker implements."""

from __future__ import annotations

from typing import Any

from umbra.server.handlers import API_HANDLERS, RequestContext, handles


def supported_versions() -> list[dict[str, int]]:
    return [{"api_key": h.api_key, "min_version": h.min_version, "max_version": h.max_version}
            for h in sorted(API_HANDLERS.values(), key=lambda h: h.api_key)]


@handles(18, "ApiVersions", 0, 4)
async def handle_api_versions(ctx: RequestContext, request: Any) -> dict[str, Any]:
    return {"error_code": 0, "api_keys": supported_versions(), "throttle_time_ms": 0}
