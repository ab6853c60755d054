"""docs/compatibility.md's table of Kafka API keys says what the handler registry advertises: a handler that gains
or loses versions (or an API added or removed) without the table changing fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from umbra.server.handlers import API_HANDLERS, load_all

DOC = Path(__file__).resolve().parents[3] / "docs" / "compatibility.md"
SECTION = "## Kafka API keys"
HIGHEST_KEY = 92  # Kafka 4.x's DeleteShareGroupOffsets: the table covers every key up to it
NOT_SERVED = "—"
_VERSIONS = re.compile(r"(\d+)(?:-(\d+))?")


def table_rows() -> dict[int, tuple[str, str]]:
    """api key -> (API name, umbra's versions as written), from the section's table."""
    text = DOC.read_text("utf-8")
    assert SECTION in text, f"{DOC} has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[int, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].isdigit():
            continue  # prose, the header, the separator
        key = int(cells[0])
        assert key not in rows, f"api key {key} has two rows"
        rows[key] = (cells[1], cells[2])
    return rows


def parse_versions(text: str) -> tuple[int, int] | None:
    if text == NOT_SERVED:
        return None
    match = _VERSIONS.fullmatch(text)
    assert match is not None, f"{text!r} is neither N, N-M nor {NOT_SERVED}"
    low = int(match.group(1))
    return low, int(match.group(2) or low)


@pytest.fixture(scope="module")
def rows() -> dict[int, tuple[str, str]]:
    load_all()
    return table_rows()


def test_the_table_has_every_api_key(rows: dict[int, tuple[str, str]]) -> None:
    assert sorted(rows) == list(range(HIGHEST_KEY + 1))


def test_the_table_states_what_the_registry_advertises(rows: dict[int, tuple[str, str]]) -> None:
    stated = {key: parse_versions(versions) for key, (_, versions) in rows.items()}
    served = {key: (h.min_version, h.max_version) for key, h in API_HANDLERS.items()}
    wrong = {key: (stated.get(key), served.get(key)) for key in set(stated) | set(served)
             if stated.get(key) != served.get(key)}
    assert not wrong, f"api key: (the table's versions, the registry's): {wrong}"


def test_the_table_names_each_served_api_as_its_handler(rows: dict[int, tuple[str, str]]) -> None:
    wrong = {key: (rows[key][0], h.name) for key, h in API_HANDLERS.items() if key in rows and rows[key][0] != h.name}
    assert not wrong, wrong


def test_versions_are_parsed_as_written() -> None:
    assert parse_versions("0") == (0, 0)
    assert parse_versions("4-17") == (4, 17)
    assert parse_versions(NOT_SERVED) is None
