"""The broker process: listeners, connections, and one handler module per Kafka API family."""
