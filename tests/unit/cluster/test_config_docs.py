"""docs/compatibility.md lists the Kafka configs umbra stores without effect: exactly those of the tables."""

from __future__ import annotations

from pathlib import Path

from umbra.cluster.config_docs import stored_only_section

COMPATIBILITY = Path(__file__).resolve().parents[3] / "docs" / "compatibility.md"


def test_compatibility_doc_lists_the_stored_only_configs() -> None:
    section = stored_only_section()
    assert section in COMPATIBILITY.read_text("utf-8"), (
        "docs/compatibility.md's 'Kafka configs stored without effect' section differs from the config tables: "
        "replace it with the output of `python -m umbra.cluster.config_docs`")
