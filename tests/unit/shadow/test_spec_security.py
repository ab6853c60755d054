"""``source.tls`` and ``source.sasl``: parsed, kept through the stored form, and never holding a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from umbra.client.settings import SaslSettings, TlsSettings
from umbra.shadow.spec import SpecError, parse_link_spec


def link_doc(**source: Any) -> dict[str, Any]:
    return {"name": "dr", "source": {"bootstrap_servers": ["a:9093"], **source},
            "topics": {"filters": [{"include": "literal", "name": "orders"}]}}


def test_tls_and_sasl_are_parsed_and_survive_the_stored_form() -> None:
    spec = parse_link_spec(link_doc(
        tls={"ca_file": "/etc/umbra/source-ca.pem", "cert_file": "/etc/umbra/c.pem", "key_file": "/etc/umbra/c.key"},
        sasl={"mechanism": "SCRAM-SHA-512", "username": "shadow", "password_file": "/etc/umbra/source.pw"}))
    assert spec.source.tls == TlsSettings("/etc/umbra/source-ca.pem", "/etc/umbra/c.pem", "/etc/umbra/c.key", True)
    assert spec.source.sasl == SaslSettings("SCRAM-SHA-512", "shadow", "/etc/umbra/source.pw", None)
    stored = spec.to_json()
    assert stored["source"]["tls"]["enabled"] is True
    assert parse_link_spec(json.loads(json.dumps(stored))) == spec


def test_no_tls_section_or_tls_disabled_is_plaintext() -> None:
    assert parse_link_spec(link_doc()).source.tls is None
    assert parse_link_spec(link_doc(tls={"enabled": False, "ca_file": "/x"})).source.tls is None
    assert "tls" not in parse_link_spec(link_doc()).to_json()["source"]
    assert parse_link_spec(link_doc(tls={"verify_hostname": False})).source.tls == TlsSettings(verify_hostname=False)


@pytest.mark.parametrize(("source", "message"), [
    ({"sasl": {"mechanism": "GSSAPI", "username": "u", "password_env": "P"}},
     "source.sasl.mechanism: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI'"),
    ({"sasl": {"mechanism": "PLAIN", "username": "u"}}, "source.sasl: exactly one of password_file and password_env"),
    ({"sasl": {"mechanism": "PLAIN", "username": "u", "password_file": "/f", "password_env": "P"}},
     "exactly one of password_file and password_env"),
    ({"sasl": {"mechanism": "PLAIN", "username": "u", "password": "hunter2"}},
     "source.sasl.password: never given inline"),
    ({"sasl": {"mechanism": "PLAIN", "password_env": "P"}}, "source.sasl.username: required"),
    ({"sasl": {"mechanism": "PLAIN", "username": "", "password_env": "P"}}, "source.sasl.username: expected a non-empty"),
    ({"tls": {"cert_file": "/c.pem"}}, "source.tls: cert_file and key_file go together"),
    ({"tls": {"enabled": "yes"}}, "source.tls.enabled: expected true or false"),
    ({"tls": {"ca": "/x"}}, "source.tls.ca: unknown key"),
])
def test_bad_security_settings_are_named(source: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_link_spec(link_doc(**source))
    assert "hunter2" not in str(caught.value)
