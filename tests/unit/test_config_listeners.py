"""The `listeners` setting: typed listeners from YAML, the `listen` shorthand, and one line naming every
mistake (the entry and the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pki import CertificateAuthority

from umbra.config import (
    BrokerConfig,
    ClientAuth,
    ConfigError,
    HostPort,
    ListenerConfig,
    SecurityProtocol,
    TlsSettings,
    build_config,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory)
    server = ca.issue_server()
    other = CertificateAuthority(directory / "other", "other CA").issue_server("other-server")
    (directory / "not-pem.txt").write_text("hello\n")
    return {"ca": str(ca.cert_file), "cert": str(server.cert_file), "key": str(server.key_file),
            "other_key": str(other.key_file), "not_pem": str(directory / "not-pem.txt"),
            "missing": str(directory / "absent.pem"), "dir": str(directory)}


def tls(pki: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {"cert_file": pki["cert"], "key_file": pki["key"], **overrides}


def test_listen_is_the_one_plaintext_listener_shorthand() -> None:
    config = build_config({"listen": "0.0.0.0:9092", "advertise": "kafka.example:9092"}, {})
    assert config.listeners == (ListenerConfig("PLAINTEXT", HostPort("0.0.0.0", 9092),
                                               HostPort("kafka.example", 9092)),)
    assert BrokerConfig().listeners == (ListenerConfig("PLAINTEXT", HostPort("127.0.0.1", 9092)),)


def test_listeners_parse_into_typed_settings(pki: dict[str, str]) -> None:
    config = build_config({"listeners": [
        {"name": "INTERNAL", "address": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"},
        {"name": "EXTERNAL", "address": "0.0.0.0:9093", "advertise": "kafka.example:443",
         "security_protocol": "SSL", "tls": tls(pki, ca_file=pki["ca"], client_auth="required")},
        {"name": "SASL_SSL", "address": "0.0.0.0:9094", "sasl_mechanisms": ["SCRAM-SHA-512", "PLAIN"],
         "tls": tls(pki)},
    ]}, {})
    internal, external, sasl = config.listeners
    assert internal == ListenerConfig("INTERNAL", HostPort("127.0.0.1", 9092))
    assert external.security_protocol is SecurityProtocol.SSL and external.advertise == HostPort("kafka.example", 443)
    assert external.tls == TlsSettings(Path(pki["cert"]), Path(pki["key"]), Path(pki["ca"]), ClientAuth.REQUIRED)
    assert sasl.security_protocol is SecurityProtocol.SASL_SSL  # a protocol's name is its default protocol
    assert sasl.sasl_mechanisms == ("SCRAM-SHA-512", "PLAIN") and sasl.tls is not None
    assert sasl.tls.client_auth is ClientAuth.NONE
    # listen and advertise stay the first listener's, for what reads them
    assert config.listen == HostPort("127.0.0.1", 9092) and config.advertise is None


@pytest.mark.parametrize(("listeners", "expected"), [
    ("PLAINTEXT://127.0.0.1:9092", "listeners: expected a non-empty list of listeners"),
    ([], "listeners: expected a non-empty list"),
    (["127.0.0.1:9092"], "listeners[0]: expected a mapping"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT", "port": 1}],
     "listeners[0]: unknown key 'port'"),
    ([{"address": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}], "listeners[0].name: expected 1-64 letters"),
    ([{"name": "a b", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}], "listeners[0].name"),
    ([{"name": "A", "security_protocol": "PLAINTEXT"}], "listeners[0].address: required"),
    ([{"name": "A", "address": "nowhere", "security_protocol": "PLAINTEXT"}],
     "listeners[0].address: expected HOST:PORT, got 'nowhere'"),
    ([{"name": "A", "address": "127.0.0.1:70000", "security_protocol": "PLAINTEXT"}],
     "listeners[0].address: port 70000 is outside 0..65535"),
    ([{"name": "A", "address": "127.0.0.1:1", "advertise": "x", "security_protocol": "PLAINTEXT"}],
     "listeners[0].advertise: expected HOST:PORT"),
    ([{"name": "A", "address": "127.0.0.1:1"}], "listeners[0].security_protocol: required"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "TLS"}],
     "listeners[0].security_protocol: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT"},
      {"name": "a", "address": "127.0.0.1:2", "security_protocol": "PLAINTEXT"}],
     "listeners[1].name: 'a' is listeners[0]'s name too"),
    ([{"name": "A", "address": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"},
      {"name": "B", "address": "0.0.0.0:9092", "security_protocol": "PLAINTEXT"}],
     "listeners[1].address: port 9092 is listeners[0]'s port too"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT", "sasl_mechanisms": ["PLAIN"]}],
     "listeners[0].sasl_mechanisms: only for SASL_PLAINTEXT and SASL_SSL listeners, not PLAINTEXT"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT"}],
     "listeners[0].sasl_mechanisms: required on a SASL_PLAINTEXT listener"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanisms": []}],
     "listeners[0].sasl_mechanisms: expected a non-empty list"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT",
       "sasl_mechanisms": ["GSSAPI"]}], "listeners[0].sasl_mechanisms: expected PLAIN, SCRAM-SHA-256, "
                                        "SCRAM-SHA-512, got 'GSSAPI'"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT",
       "sasl_mechanisms": ["PLAIN", "PLAIN"]}], "names a mechanism twice"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "SSL"}],
     "listeners[0].tls: required on a SSL listener (cert_file and key_file)"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "SASL_SSL", "sasl_mechanisms": ["PLAIN"]}],
     "listeners[0].tls: required on a SASL_SSL listener"),
    ([{"name": "A", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT", "tls": {}}],
     "listeners[0].tls: only for SSL and SASL_SSL listeners, not PLAINTEXT"),
])
def test_a_bad_listener_is_one_line_naming_the_entry_and_key(listeners: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_config({"listeners": listeners}, {})
    assert expected in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"key_file": "key"}, "listeners[0].tls.cert_file: required (a PEM file)"),
    ({"cert_file": "cert"}, "listeners[0].tls.key_file: required (a PEM file)"),
    ({"cert_file": "missing", "key_file": "key"}, "listeners[0].tls.cert_file: cannot read {missing}: No such file"),
    ({"cert_file": "dir", "key_file": "key"}, "listeners[0].tls.cert_file: cannot read {dir}: Is a directory"),
    ({"cert_file": "cert", "key_file": "key", "ca_file": "missing"}, "listeners[0].tls.ca_file: cannot read"),
    ({"cert_file": "not_pem", "key_file": "key"}, "listeners[0].tls: cert_file {not_pem}: not a PEM certificate"),
    ({"cert_file": "cert", "key_file": "not_pem"}, "listeners[0].tls: key_file {not_pem}: not a PEM private key"),
    ({"cert_file": "cert", "key_file": "other_key"}, "listeners[0].tls: cannot use cert_file {cert} with key_file "
                                                     "{other_key}: key values mismatch"),
    ({"cert_file": "cert", "key_file": "key", "ca_file": "key"}, "listeners[0].tls: ca_file {key}: no usable CA"),
    ({"cert_file": "cert", "key_file": "key", "client_auth": "required"},
     "listeners[0].tls.ca_file: required with client_auth required"),
    ({"cert_file": "cert", "key_file": "key", "client_auth": "maybe"},
     "listeners[0].tls.client_auth: expected none, requested or required, got 'maybe'"),
    ({"cert_file": "cert", "key_file": "key", "password": "x"}, "listeners[0].tls: unknown key 'password'"),
    ("cert.pem", "listeners[0].tls: expected a mapping with cert_file and key_file"),
])
def test_bad_tls_settings_are_one_line(pki: dict[str, str], settings: Any, expected: str) -> None:
    if isinstance(settings, dict):
        settings = {key: pki.get(value, value) for key, value in settings.items()}
    listener = {"name": "SSL", "address": "127.0.0.1:0", "tls": settings}
    with pytest.raises(ConfigError) as raised:
        build_config({"listeners": [listener]}, {})
    assert expected.format(**pki) in str(raised.value) and "\n" not in str(raised.value)


def test_an_encrypted_key_is_refused_not_prompted_for(pki: dict[str, str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(pki["key"]).read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")))
    listener = {"name": "SSL", "address": "127.0.0.1:0", "tls": {"cert_file": pki["cert"], "key_file": str(encrypted)}}
    with pytest.raises(ConfigError, match="is encrypted: umbra needs an unencrypted key"):
        build_config({"listeners": [listener]}, {})


@pytest.mark.parametrize(("file_values", "flags", "expected"), [
    ({"listeners": [{"name": "P", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}]},
     {"listen": "127.0.0.1:2"}, "listen: give either listen (and advertise), the one-PLAINTEXT-listener shorthand, "
                                "or listeners, not both"),
    ({"listeners": [{"name": "P", "address": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}],
      "advertise": "h:1"}, {}, "advertise: give either"),
    ({"listeners": [{"name": "P", "address": "127.0.0.1:9644", "security_protocol": "PLAINTEXT"}]}, {},
     "listeners[0].address: port 9644 is admin_listen's too"),
])
def test_listeners_with_other_settings(file_values: dict[str, Any], flags: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(file_values, flags)
    assert expected in str(raised.value)


def test_on_a_cluster_the_inter_broker_listener_has_what_it_needs(pki: dict[str, str]) -> None:
    listeners = [{"name": "SSL", "address": "127.0.0.1:1", "tls": tls(pki)},
                 {"name": "INTERNAL", "address": "127.0.0.1:2", "security_protocol": "SASL_PLAINTEXT",
                  "sasl_mechanisms": ["SCRAM-SHA-512"]}]
    cluster = {"etcd": "http://127.0.0.1:2379", "cluster_id": "c"}
    with pytest.raises(ConfigError, match=r"inter_broker.tls: required, listener SSL is SSL"):
        build_config({"listeners": listeners, **cluster}, {})
    with pytest.raises(ConfigError, match=r"inter_broker.listener: no listener is called 'NOPE'"):
        build_config({"listeners": listeners, **cluster, "inter_broker": {"listener": "NOPE"}}, {})
    with pytest.raises(ConfigError, match=r"inter_broker.sasl: required, listener INTERNAL is SASL_PLAINTEXT"):
        build_config({"listeners": listeners, **cluster, "inter_broker": {"listener": "INTERNAL"}}, {})
    plain = {"mechanism": "PLAIN", "username": "broker", "password_env": "P"}
    with pytest.raises(ConfigError, match=r"inter_broker.sasl.mechanism: PLAIN is not one listener INTERNAL enables"):
        build_config({"listeners": listeners, **cluster, "inter_broker": {"listener": "INTERNAL", "sasl": plain}}, {})
    with pytest.raises(ConfigError, match=r"inter_broker.sasl.password: never given inline"):
        build_config({"listeners": listeners, **cluster,
                      "inter_broker": {"listener": "INTERNAL", "sasl": {**plain, "password": "x"}}}, {})
    config = build_config({"listeners": listeners, **cluster, "inter_broker": {
        "listener": "INTERNAL", "sasl": {**plain, "mechanism": "SCRAM-SHA-512"}}}, {})
    assert config.inter_broker_listener() is not None and config.inter_broker_listener().name == "INTERNAL"
    config = build_config({"listeners": listeners, **cluster, "inter_broker": {"tls": {"ca_file": pki["ca"]}}}, {})
    assert config.inter_broker.tls is not None and config.inter_broker.tls.ca_file == pki["ca"]
