"""Cluster metadata: topics, partitions, configs. The `local` backend keeps it in a file in the data dir."""
