"""The "stored without effect" section of docs/compatibility.md, generated from the config tables.

``python -m umbra.cluster.config_docs`` prints it; tests/unit/cluster/test_config_docs.py fails when the
document and the tables disagree, so that the list stays true as configs gain an effect.
"""

from __future__ import annotations

from umbra.cluster.configs import BROKER_CONFIGS, TOPIC_CONFIGS, BrokerConfigDef
from umbra.cluster.group_configs import GROUP_CONFIG_DEFS, default_value
from umbra.config import BrokerConfig

_SCOPES = {
    "cluster": "dynamic: per broker or cluster-wide",
    "broker": "dynamic: per broker only",
    "listener": "Kafka changes it only per listener (`listener.name.<l>.`): refused, as umbra has no listener prefix",
    "static": "read-only",
}


def _cell(value: str) -> str:
    return f"`{value}`" if value else '`""`'


def _broker_default(definition: BrokerConfigDef) -> str:
    return definition.static(BrokerConfig())


def stored_only_section() -> str:
    lines = [
        "## Kafka configs stored without effect",
        "",
        "umbra accepts every topic, broker and group config that Kafka 4.0 defines (and the topic configs Kafka 3.x "
        "still accepts), with Kafka's types, ranges and errors; it stores them, DescribeConfigs reports them with "
        "their source, and shadow links sync topic configs. The configs below are stored and described but have no "
        "effect in umbra. The list is generated from `umbra/cluster/kafka_configs.py` "
        "(`python -m umbra.cluster.config_docs`), and `tests/unit/cluster/test_config_docs.py` fails when they differ.",
        "",
        "### Topic configs",
        "",
        "| Config | Type | Default | Broker default |",
        "| --- | --- | --- | --- |",
    ]
    for name, topic in sorted(TOPIC_CONFIGS.items()):
        if not topic.acted_on:
            default = (_broker_default(BROKER_CONFIGS[topic.broker_synonym]) if topic.broker_synonym
                       else topic.default)
            synonym = f"`{topic.broker_synonym}`" if topic.broker_synonym else "none"
            lines.append(f"| `{name}` | {topic.type.name} | {_cell(default)} | {synonym} |")
    lines += ["", "### Broker configs", "",
              "The broker defaults of the topic configs above are stored without effect too.", "",
              "| Config | Type | Default | Alterable |", "| --- | --- | --- | --- |"]
    synonyms = {t.broker_synonym for t in TOPIC_CONFIGS.values() if not t.acted_on}
    for name, broker in sorted(BROKER_CONFIGS.items()):
        if not broker.acted_on and name not in synonyms:
            default = "(hidden)" if broker.sensitive else _cell(_broker_default(broker))
            lines.append(f"| `{name}` | {broker.type.name} | {default} | {_SCOPES[broker.scope]} |")
    lines += ["", "### Group configs (resource type 32)", "",
              "| Config | Type | Default |", "| --- | --- | --- |"]
    for name, group in sorted(GROUP_CONFIG_DEFS.items()):
        if not group.acted_on:
            lines.append(f"| `{name}` | {group.type.name} | {_cell(default_value(group, BrokerConfig()))} |")
    lines += ["", "Where umbra differs from Kafka: a broker config name Kafka does not define is refused "
              "(INVALID_CONFIG \"Unknown broker config name\"), where Kafka would store it; listener-prefixed "
              "broker configs (`listener.name.<l>.<config>`) are refused the same way; `listeners`, `advertised.listeners`, "
              "`listener.security.protocol.map` and `log.cleaner.backoff.ms`, dynamic in Kafka, are read-only in umbra "
              "(they are set in its config file and acted on).",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(stored_only_section(), end="")
