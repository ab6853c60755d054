"""``source.client.rack`` (KIP-392): parsed without touching the caller's document, kept through the stored
form, and sent as the Fetch request's ``rack_id``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from umbra.client.fetch_session import FetchSession
from umbra.client.fetcher import fetch_request_fields
from umbra.client.settings import FetchSettings
from umbra.shadow.spec import SpecError, parse_link_spec


def link_doc(**client: Any) -> dict[str, Any]:
    return {"name": "dr", "source": {"bootstrap_servers": ["a:9092"], "client": client},
            "topics": {"filters": [{"include": "literal", "name": "orders"}]}}


def test_the_rack_is_parsed_kept_and_the_document_left_as_it_was() -> None:
    doc = link_doc(rack="az1", fetch_max_wait_ms=100)
    before = copy.deepcopy(doc)
    spec = parse_link_spec(doc)
    assert doc == before  # parsed twice (validation, then the link) it must give the same spec
    assert parse_link_spec(doc) == spec and spec.source.client.rack == "az1"
    assert parse_link_spec(spec.to_json()).source.client.rack == "az1"
    assert "rack" not in parse_link_spec(link_doc()).to_json()["source"]["client"]


@pytest.mark.parametrize("rack", ["", "   ", 3, "x" * 256])
def test_a_bad_rack_is_refused_with_its_name(rack: Any) -> None:
    with pytest.raises(SpecError, match="source.client.rack"):
        parse_link_spec(link_doc(rack=rack))


def test_the_fetch_request_names_the_rack() -> None:
    session = FetchSession()
    session.add_partition(("orders", 0), 0)
    assert fetch_request_fields(session.build_request(), FetchSettings(rack="az1"))["rack_id"] == "az1"
    assert fetch_request_fields(session.build_request(), FetchSettings())["rack_id"] == ""
