"""umbra: a Kafka-API streaming broker with broker-internal shadow links."""

__version__ = "0.1.0"
