"""Request decoding and response encoding (sans-I/O).

The long tail of Kafka APIs is decoded and encoded by kafka-python's
schema-driven ``kafka.protocol`` classes, generated from Apache Kafka's JSON
message definitions (unknown tagged fields are kept, never an error). The
request header is parsed here by hand so that a request with an unknown API key
or version can still be answered with its correlation id.

Everything that goes wrong while decoding raises :class:`ProtocolDecodeError`
and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import kafka.protocol.admin as _admin
import kafka.protocol.consumer as _consumer
import kafka.protocol.metadata as _metadata
import kafka.protocol.producer as _producer
import kafka.protocol.sasl as _sasl
from kafka.protocol.api_message import ApiMessage

from umbra.protocol import varint
from umbra.protocol.extra_messages import EXTRA_MESSAGES
from umbra.protocol.produce_codec import ProduceDecodeError, decode_produce_request

_HEADER = struct.Struct(">hhih")
PRODUCE = 0


class ProtocolDecodeError(Exception):
    """The bytes are not a valid request. ``header`` is set when the header itself parsed."""

    def __init__(self, message: str, header: RequestHeader | None = None) -> None:
        super().__init__(message)
        self.header = header


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(frozen=True, slots=True)
class ApiSchema:
    api_key: int
    name: str
    request: type[ApiMessage]
    response: type[ApiMessage]

    def is_flexible(self, version: int) -> bool:
        return bool(self.request.flexible_version_q(version))


def _collect_schemas() -> dict[int, ApiSchema]:
    pairs: dict[int, dict[str, type[ApiMessage]]] = {}
    found: list[object] = [getattr(module, name) for module in (_admin, _consumer, _metadata, _producer, _sasl)
                           for name in dir(module)]
    # Ours come last: built from Kafka's JSON definitions for the APIs kafka-python lacks (extra_messages.py).
    for obj in [*found, *EXTRA_MESSAGES]:
        if isinstance(obj, type) and issubclass(obj, ApiMessage) and getattr(obj, "_json", None):
            message: Any = obj  # classproperties the type checker cannot see
            pairs.setdefault(int(message.API_KEY), {})[str(message.type)] = obj
    schemas = {}
    for key, pair in pairs.items():
        if "request" in pair and "response" in pair:
            name = pair["request"].name.removesuffix("Request")
            schemas[key] = ApiSchema(key, name, pair["request"], pair["response"])
    return schemas


SCHEMAS: dict[int, ApiSchema] = _collect_schemas()


def decode_header(frame: bytes | bytearray) -> tuple[RequestHeader, int]:
    """Parse the v1 part of the request header (common to v0-v2). Returns the header and the body offset."""
    if len(frame) < 8:
        raise ProtocolDecodeError(f"request of {len(frame)} bytes is shorter than a request header")
    if len(frame) < _HEADER.size:
        api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame, 0)
        raise ProtocolDecodeError("request header truncated", RequestHeader(api_key, api_version, correlation_id, None))
    api_key, api_version, correlation_id, client_len = _HEADER.unpack_from(frame, 0)
    pos = _HEADER.size
    client_id: str | None = None
    header = RequestHeader(api_key, api_version, correlation_id, None)
    if client_len >= 0:
        if pos + client_len > len(frame):
            raise ProtocolDecodeError("client id runs past the end of the request", header)
        try:
            client_id = frame[pos : pos + client_len].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolDecodeError("client id is not UTF-8", header) from None
        pos += client_len
    elif client_len != -1:
        raise ProtocolDecodeError(f"bad client id length {client_len}", header)
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def skip_tagged_fields(frame: bytes | bytearray, pos: int, header: RequestHeader | None = None) -> int:
    try:
        return varint.skip_tagged_fields(frame, pos)
    except varint.VarintError as exc:
        raise ProtocolDecodeError(f"request header: {exc}", header) from None


def body_offset(frame: bytes | bytearray, header: RequestHeader, header_end: int) -> int:
    """Offset of the request body: past the tagged fields of a v2 (flexible) header."""
    schema = SCHEMAS.get(header.api_key)
    if schema is not None and schema.is_flexible(header.api_version):
        return skip_tagged_fields(frame, header_end, header)
    return header_end


def decode_body(schema: ApiSchema, header: RequestHeader, frame: bytes | bytearray, pos: int) -> Any:
    """Decode a request body (hot paths by hand, the rest with the schema codec); failures raise
    ProtocolDecodeError."""
    if header.api_key == PRODUCE and 3 <= header.api_version <= 12:
        try:
            return decode_produce_request(frame, pos, header.api_version)
        except ProduceDecodeError as exc:
            raise ProtocolDecodeError(f"malformed Produce v{header.api_version} request: {exc}", header) from None
    try:
        body = schema.request.decode(memoryview(frame)[pos:], version=header.api_version)
    except ProtocolDecodeError:
        raise
    except Exception as exc:  # the codec raises many types on bad input
        raise ProtocolDecodeError(f"malformed {schema.name} v{header.api_version} request: {exc!r}", header) from None
    problem = _null_where_forbidden(body, schema.request._struct.fields, header.api_version)
    if problem is not None:
        raise ProtocolDecodeError(f"malformed {schema.name} v{header.api_version} request: {problem} is null", header)
    return body


_NULLABLE_KINDS = ("string", "bytes", "records")


def _null_where_forbidden(value: Any, fields: dict[str, Any], version: int, path: str = "") -> str | None:
    """The first field that holds a null its schema forbids at ``version``, or None.

    The schema codec decodes a length of -1 as None for any array, string or bytes field, nullable or not, and
    handlers iterate such fields: a forbidden null must be refused here, like any other malformed request."""
    for name, field in fields.items():
        if not field.for_version_q(version) or field.tagged_field_q(version):
            continue
        item = getattr(value, name, None)
        where = f"{path}{name}"
        if item is None:
            kind = getattr(field, "_type_str", "")
            if (field.is_array() or kind in _NULLABLE_KINDS) and not field.nullable_for_version_q(version):
                return where
            continue
        if field.is_struct_array():
            for element in item:
                problem = _null_where_forbidden(element, field.fields, version, f"{where}[].")
                if problem is not None:
                    return problem
        elif field.is_struct():
            problem = _null_where_forbidden(item, field.fields, version, f"{where}.")
            if problem is not None:
                return problem
    return None


def decode_request(frame: bytes) -> tuple[RequestHeader, Any]:
    """Decode a whole request frame: header and body. Raises only ProtocolDecodeError."""
    try:
        header, pos = decode_header(frame)
        schema = SCHEMAS.get(header.api_key)
        if schema is None:
            raise ProtocolDecodeError(f"unknown api key {header.api_key}", header)
        if not 0 <= header.api_version <= schema.request.max_version:
            raise ProtocolDecodeError(f"{schema.name} v{header.api_version} is not a known version", header)
        pos = body_offset(frame, header, pos)
        return header, decode_body(schema, header, frame, pos)
    except ProtocolDecodeError:
        raise
    except Exception as exc:
        raise ProtocolDecodeError(f"malformed request: {exc!r}") from None


def response_header_bytes(api_key: int, version: int, correlation_id: int) -> bytes:
    """Response header: v1 (with an empty tag buffer) for flexible versions, except ApiVersions (always v0)."""
    schema = SCHEMAS[api_key]
    if api_key != 18 and schema.is_flexible(version):
        return struct.pack(">ib", correlation_id, 0)
    return struct.pack(">i", correlation_id)


def _convert(data_class: Any, version: int, value: Any) -> Any:
    """Turn nested dicts (and lists of dicts) into the codec's data classes."""
    if not isinstance(value, dict):
        return value
    kwargs = _field_values(data_class, version, value)
    # Nested structs are built unversioned: some exist only in later versions than the one encoded.
    return data_class(version=version, **kwargs) if hasattr(data_class, "_class_version") else data_class(**kwargs)


def _field_values(message_cls: Any, version: int, fields: dict[str, Any]) -> dict[str, Any]:
    struct_fields = message_cls._struct.fields
    kwargs: dict[str, Any] = {}
    for name, value in fields.items():
        field = struct_fields.get(name)
        if field is None:
            raise KeyError(f"{message_cls.__name__} has no field {name!r}")
        if field.is_struct() and isinstance(value, dict):
            value = _convert(field.data_class, version, value)
        elif field.is_struct_array() and value is not None:
            value = [_convert(field.data_class, version, item) for item in value]
        kwargs[name] = value
    return kwargs


def build_message(message_cls: type[ApiMessage], version: int, fields: dict[str, Any]) -> ApiMessage:
    """A request or response object from plain (nested) dicts; absent fields take schema defaults."""
    return message_cls[version](**_field_values(message_cls, version, fields))


def build_response(api_key: int, version: int, fields: dict[str, Any]) -> ApiMessage:
    return build_message(SCHEMAS[api_key].response, version, fields)


def build_request(api_key: int, version: int, fields: dict[str, Any]) -> ApiMessage:
    return build_message(SCHEMAS[api_key].request, version, fields)


def encode_response(api_key: int, version: int, correlation_id: int, response: ApiMessage | bytes) -> bytes:
    """Frame a response: size, header, body. ``response`` may be pre-encoded body bytes (hot paths)."""
    body = response if isinstance(response, (bytes, bytearray, memoryview)) else response.encode(version=version)
    header = response_header_bytes(api_key, version, correlation_id)
    return struct.pack(">i", len(header) + len(body)) + header + bytes(body)


def error_response(api_key: int, version: int, error_code: int) -> ApiMessage:
    """A response carrying ``error_code`` in every top-level error field (others default)."""
    schema = SCHEMAS[api_key]
    response_cls = schema.response
    fields: dict[str, Any] = {}
    if "error_code" in response_cls._struct.fields:
        fields["error_code"] = error_code
    return build_response(api_key, min(version, response_cls.max_version), fields)
