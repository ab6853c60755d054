"""The `umbra` command: a thin layer over the broker, the admin API and the Kafka protocol."""
