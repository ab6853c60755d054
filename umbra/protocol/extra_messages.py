"""Codec classes for APIs that kafka-python 3.0.12 does not ship, built from Kafka's JSON message definitions
in ``umbra/protocol/schemas/`` by kafka-python's own machinery: an ``ApiMessage`` subclass loads the JSON named
like the class from the package given as ``load_json`` (its metaclass builds the struct codec from it)."""

from __future__ import annotations

from kafka.protocol.api_message import ApiMessage

from umbra.protocol import schemas

# The class name must be the JSON file's name: kafka-python's metaclass loads "<class name>.json".


class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=schemas):  # type: ignore[misc,call-arg]
    pass


class ConsumerGroupHeartbeatResponse(ApiMessage, load_json=schemas):  # type: ignore[misc,call-arg]
    pass


class ConsumerGroupDescribeRequest(ApiMessage, load_json=schemas):  # type: ignore[misc,call-arg]
    pass


class ConsumerGroupDescribeResponse(ApiMessage, load_json=schemas):  # type: ignore[misc,call-arg]
    pass


EXTRA_MESSAGES: tuple[type[ApiMessage], ...] = (
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
)
