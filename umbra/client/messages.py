"""Build request messages from plain dicts and decode response frames, via ``umbra.protocol.codec``.

kafka-python's message classes want nested structs as their own data classes; callers here write
plain nested dicts and lists, which :func:`umbra.protocol.codec.build_request` converts.
"""

from __future__ import annotations

import struct
from typing import Any

from kafka.protocol.api_message import ApiMessage

from umbra.client.errors import ClientProtocolError
from umbra.protocol.codec import SCHEMAS
from umbra.protocol.varint import VarintError, skip_tagged_fields

_INT32 = struct.Struct(">i")


def encode_request(request: ApiMessage, correlation_id: int, client_id: str) -> bytes:
    """Size-prefixed request frame: size, request header (v1 or v2), body."""
    request.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(request.encode(header=True, framed=True))


def response_header_size(api_key: int, version: int, frame: bytes | memoryview) -> int:
    """Bytes of the response header at the start of ``frame`` (correlation id, then tags if flexible).

    ApiVersions responses always carry a v0 header, whatever the body version (KIP-511).
    """
    if api_key == 18 or not SCHEMAS[api_key].is_flexible(version):
        return 4
    try:
        return skip_tagged_fields(frame, 4)
    except VarintError as exc:
        raise ClientProtocolError(f"response header: {exc}") from None


def decode_response(api_key: int, version: int, frame: bytes | memoryview) -> Any:
    """Decode a whole response frame (without its size prefix) with the schema codec."""
    try:
        return SCHEMAS[api_key].response.decode(frame, version=version, header=True)
    except Exception as exc:  # the codec raises many types on bad input
        name = SCHEMAS[api_key].name
        raise ClientProtocolError(f"malformed {name} v{version} response: {exc!r}") from None


def correlation_id_of(frame: bytes | memoryview) -> int:
    if len(frame) < 4:
        raise ClientProtocolError(f"response of {len(frame)} bytes has no correlation id")
    return int(_INT32.unpack_from(frame, 0)[0])
