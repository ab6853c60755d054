"""Exceptions raised by the outbound client. Every failure the client sees surfaces as one of these."""

from __future__ import annotations

from umbra.errors import ErrorCode


class ClientError(Exception):
    """Base class of everything the client raises."""


class ClientConnectionError(ClientError):
    """The connection could not be made, was lost, or is closed. Retriable after a reconnect."""


class ClientProtocolError(ClientConnectionError):
    """The remote sent bytes we cannot make sense of; the connection was closed."""


class ClientTimeout(ClientError):
    """A connect or a request did not finish in time. A timed-out connection is closed."""


class UnsupportedApiError(ClientError):
    """The remote broker supports no version of an API that this client knows how to use."""


class ClientResponseError(ClientError):
    """The remote answered with a Kafka error code where the operation as a whole failed."""

    def __init__(self, code: int, message: str = "") -> None:
        try:
            self.code: ErrorCode | int = ErrorCode(code)
            name = self.code.name
        except ValueError:
            self.code = code
            name = f"error code {code}"
        super().__init__(f"{name}: {message}" if message else name)
