"""The other brokers of a cluster, reached over their admin HTTP API: the controller's failover fences every
broker's replicators through it, and shadow-link status is gathered from every broker with it."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from umbra.admin.auth import INTERNAL_TOKEN_HEADER
from umbra.shadow.host import PeerUnavailable

if TYPE_CHECKING:
    from umbra.cluster.control import ControlPlane

CALL_TIMEOUT_S = 10.0


class ClusterPeers:
    def __init__(self, control: ControlPlane, timeout_s: float = CALL_TIMEOUT_S, *,
                 ssl_context: ssl.SSLContext | None = None, token: Callable[[], str | None] = lambda: None) -> None:
        self.control = control
        self.timeout_s = timeout_s
        self._ssl = ssl_context  # trusts the CA of the peers' admin certificates (https admin APIs)
        self._token = token  # the cluster's internal token, sent to peers whose admin API authenticates
        self._session: aiohttp.ClientSession | None = None

    def others(self) -> list[int]:
        me = self.control.node_id
        return [b.node_id for b in self.control.view().alive_brokers() if b.node_id != me]

    def admin_url(self, node_id: int) -> str | None:
        for member in self.control.view().brokers:
            if member.node_id == node_id:
                return member.admin_address.rstrip("/")
        return None

    async def call(self, node_id: int, path: str, body: dict[str, Any] | None = None) -> Any:
        status, answer = await self.request(node_id, "GET" if body is None else "POST", path, body)
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else answer
            raise PeerUnavailable(f"broker {node_id} answered {status}: {message}")
        return answer

    async def request(self, node_id: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Any admin request to broker ``node_id``: (HTTP status, JSON answer). Raises PeerUnavailable when it
        cannot be reached or does not answer JSON."""
        base = self.admin_url(node_id)
        if base is None:
            raise PeerUnavailable(f"broker {node_id} is not registered in the cluster")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        token = self._token()
        headers = {INTERNAL_TOKEN_HEADER: token} if token is not None else {}
        try:
            async with self._session.request(method, base + path, json=body, headers=headers,
                                             ssl=self._ssl if self._ssl is not None else True) as response:
                text = await response.text()
                return response.status, json.loads(text) if text else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise PeerUnavailable(f"broker {node_id} at {base}: {exc or type(exc).__name__}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
