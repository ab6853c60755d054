"""Security: ACL bindings and their store, and the Kafka-semantics authorizer (not enforced yet)."""
