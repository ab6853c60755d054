"""Kafka wire protocol, sans-I/O: framing, headers, message codecs. Imports neither asyncio nor socket."""
