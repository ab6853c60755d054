"""Who is calling the admin API, and may they: an aiohttp middleware.

With authentication on, every endpoint but ``/v1/health`` (a readiness probe) needs a principal:
- a client certificate the admin listener's CA signed (``User:<CN>``, as on a Kafka listener), or
- HTTP Basic credentials of a SCRAM user (``User:<name>``), checked against the same users as SASL, or
- the cluster's internal token, which brokers send each other (``/v1/internal/...`` and status fan-out).

Reads (GET, HEAD) need DESCRIBE on the cluster; anything else (creating, changing, failing over and deleting
links, rebalancing, recovering storage) needs ALTER on the cluster. ``authorized`` decides, with the broker's
ACLs and super users; without authorization every authenticated principal may do anything, as in Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from umbra.security.acls import AclOperation
from umbra.security.tls import principal_from_certificate
from umbra.security.users import ScramUsers

log = logging.getLogger("umbra.admin")

INTERNAL_TOKEN_HEADER = "X-Umbra-Cluster-Token"
BROKER_PRINCIPAL = "User:umbra-broker"  # what a peer broker's calls run as (a super user of the admin API)
_OPEN_PATHS = frozenset({"/v1/health"})
_READS = frozenset({"GET", "HEAD"})
_CACHE_LIMIT = 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class AdminAccess:
    """What the middleware needs from the broker (given by the composition root)."""

    users: Callable[[], ScramUsers]  # the SCRAM users now
    authorized: Callable[[str, str, AclOperation], bool]  # (principal, client host, operation on the cluster)
    internal_token: Callable[[], str | None]  # the cluster's token for broker-to-broker calls (None: not yet)


class AdminAuthenticator:
    def __init__(self, access: AdminAccess) -> None:
        self.access = access
        # (user, sha256 of the password) -> the users object it was checked against: PBKDF2 costs milliseconds,
        # and a CLI polling status would pay it on every call. A change of users invalidates it (identity).
        self._verified: dict[tuple[str, bytes], ScramUsers] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS:
            return await handler(request)
        principal = await self.principal(request)
        if principal is None:
            return web.json_response({"error": "authentication required: HTTP Basic credentials of a SCRAM user "
                                               "or a client certificate"}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="umbra"'})
        operation = AclOperation.DESCRIBE if request.method in _READS else AclOperation.ALTER
        host = request.remote or "?"
        if principal != BROKER_PRINCIPAL and not self.access.authorized(principal, host, operation):
            log.warning("admin API: %s from %s may not %s %s (needs %s on the cluster)", principal, host,
                        request.method, request.path, operation.name)
            return web.json_response({"error": f"{principal} is not allowed {operation.name} on the cluster"},
                                     status=403)
        request["principal"] = principal
        return await handler(request)

    async def principal(self, request: web.Request) -> str | None:
        token = request.headers.get(INTERNAL_TOKEN_HEADER)
        expected = self.access.internal_token()
        if token is not None and expected is not None and hmac.compare_digest(token.encode(), expected.encode()):
            return BROKER_PRINCIPAL
        from_certificate = principal_from_certificate(_peer_certificate(request))
        if from_certificate is not None:
            return from_certificate
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep or not name:
            return None
        if await self._password_matches(name, password):
            return f"User:{name}"
        log.warning("admin API: wrong credentials for user %r from %s", name, request.remote)
        return None

    async def _password_matches(self, name: str, password: str) -> bool:
        users = self.access.users()
        key = (name, hashlib.sha256(password.encode()).digest())
        if self._verified.get(key) is users:
            return True
        credentials = users.credentials(name)
        if not credentials:
            return False
        matched = await asyncio.to_thread(lambda: any(c.matches_password(password) for c in credentials))
        if matched:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[key] = users
        return matched


def _peer_certificate(request: web.Request) -> dict[str, object] | None:
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    certificate = ssl_object.getpeercert()
    return dict(certificate) if certificate else None
