"""One module per Kafka API family. Each handler reads top to bottom: validate, act, respond.

A handler is ``async def handle(ctx: RequestContext, request) -> response`` where
``request`` is the decoded kafka-python request object and the response is one of
- a ``dict`` of top-level response fields (nested dicts/lists are converted by the codec),
- a kafka-python response object,
- ``bytes``: the already-encoded response body (hot paths),
- ``None``: send nothing (Produce with acks=0).

Handlers raise :class:`umbra.errors.KafkaError` for request-wide errors; the
connection turns it into an error response. Per-partition errors go into the
response itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from umbra.protocol.codec import RequestHeader

if TYPE_CHECKING:
    from umbra.server.broker import Broker


ANONYMOUS = "User:ANONYMOUS"  # Kafka's principal for a connection that did not authenticate


@dataclass(slots=True)
class RequestContext:
    broker: Broker
    header: RequestHeader
    peer: str
    connection_id: int
    principal: str = ANONYMOUS  # "User:<name>", set by SASL or by the client certificate (mTLS)

    @property
    def api_version(self) -> int:
        return self.header.api_version


HandlerFn = Callable[[RequestContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ApiHandler:
    api_key: int
    name: str
    min_version: int
    max_version: int
    handle: HandlerFn


API_HANDLERS: dict[int, ApiHandler] = {}


def handles(api_key: int, name: str, min_version: int, max_version: int) -> Callable[[HandlerFn], HandlerFn]:
    """Register a handler for ``api_key`` versions ``min_version..max_version`` (advertised by ApiVersions)."""

    def register(fn: HandlerFn) -> HandlerFn:
        if api_key in API_HANDLERS:
            raise RuntimeError(f"two handlers for api key {api_key}")
        API_HANDLERS[api_key] = ApiHandler(api_key, name, min_version, max_version, fn)
        return fn

    return register


def load_all() -> dict[int, ApiHandler]:
    """Import every handler module so that it registers itself."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return API_HANDLERS
