"""Kafka JSON message definitions that kafka-python 3.0.12 does not ship (KIP-848's ConsumerGroupHeartbeat and
ConsumerGroupDescribe). Facts only, taken from Apache Kafka 4.0's clients/src/main/resources/common/message/;
``umbra.protocol.extra_messages`` builds codec classes from them with kafka-python's own machinery."""
