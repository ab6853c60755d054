"""The client's SASL login against the server-side exchanges (a stand-in connection, the real SCRAM code)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from umbra.client import versions as api
from umbra.client.sasl import SaslAuthenticationError, authenticate
from umbra.client.settings import SaslSettings
from umbra.errors import ErrorCode, KafkaError
from umbra.security.plain import authenticate_plain
from umbra.security.scram import ScramMechanism, ScramServer, derive_credential

PASSWORD = "s3cret-pa55"


class Remote:
    """What a broker's SASL handlers answer, driven by the real server-side exchanges."""

    def __init__(self, mechanisms: tuple[str, ...], password: str = PASSWORD) -> None:
        self.host, self.port = "source.example", 9093
        self.mechanisms = mechanisms
        self.credentials = {m: derive_credential(m, password) for m in ScramMechanism}
        self.mechanism = ""
        self.scram: ScramServer | None = None
        self.sent: list[bytes] = []
        self.authenticated: str | None = None

    def supports(self, api_key: int) -> bool:
        return api_key in (api.SASL_HANDSHAKE, api.SASL_AUTHENTICATE)

    def version(self, api_key: int) -> int:
        return 1

    async def request(self, api_key: int, fields: dict[str, object], *, version: int | None = None,
                      timeout: float | None = None) -> object:
        if api_key == api.SASL_HANDSHAKE:
            self.mechanism = str(fields["mechanism"])
            code = 0 if self.mechanism in self.mechanisms else ErrorCode.UNSUPPORTED_SASL_MECHANISM
            return SimpleNamespace(error_code=code, mechanisms=list(self.mechanisms))
        token = fields["auth_bytes"]
        assert isinstance(token, bytes)
        self.sent.append(token)
        try:
            if self.mechanism == "PLAIN":
                self.authenticated = authenticate_plain(token, lambda user: list(self.credentials.values())
                                                        if user == "link" else [])
                return SimpleNamespace(error_code=0, error_message=None, auth_bytes=b"")
            mechanism = ScramMechanism.from_name(self.mechanism)
            assert mechanism is not None
            if self.scram is None:
                self.scram = ScramServer(mechanism, lambda user: self.credentials[mechanism] if user == "link" else None)
                return SimpleNamespace(error_code=0, error_message=None,
                                       auth_bytes=self.scram.receive_client_first(token))
            final, self.authenticated = self.scram.receive_client_final(token)
            return SimpleNamespace(error_code=0, error_message=None, auth_bytes=final)
        except KafkaError as exc:
            return SimpleNamespace(error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=str(exc),
                                   auth_bytes=b"")


def settings(tmp_path: Path, mechanism: str, password: str = PASSWORD) -> SaslSettings:
    secret = tmp_path / "password"
    secret.write_text(password + "\n")
    return SaslSettings(mechanism, "link", password_file=str(secret))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_mechanism_logs_in(tmp_path: Path, mechanism: str) -> None:
    remote = Remote(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    asyncio.run(authenticate(remote, settings(tmp_path, mechanism)))
    assert remote.authenticated == "link"
    if mechanism.startswith("SCRAM"):
        assert all(PASSWORD.encode() not in token for token in remote.sent)  # SCRAM never sends the password


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_wrong_password_is_an_authentication_error_that_does_not_show_it(tmp_path: Path, mechanism: str) -> None:
    remote = Remote(("PLAIN", "SCRAM-SHA-512"))
    with pytest.raises(SaslAuthenticationError, match="refused the credentials") as caught:
        asyncio.run(authenticate(remote, settings(tmp_path, mechanism, password="wrong-guess")))
    assert "wrong-guess" not in str(caught.value) and PASSWORD not in str(caught.value)
    assert remote.authenticated is None


def test_a_mechanism_the_source_does_not_offer_names_what_it_offers(tmp_path: Path) -> None:
    with pytest.raises(SaslAuthenticationError, match=r"does not offer SASL mechanism SCRAM-SHA-256 .*PLAIN"):
        asyncio.run(authenticate(Remote(("PLAIN",)), settings(tmp_path, "SCRAM-SHA-256")))


def test_a_password_source_that_is_missing_is_named_without_a_secret(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UMBRA_TEST_NO_SUCH_VAR", raising=False)
    with pytest.raises(SaslAuthenticationError, match="UMBRA_TEST_NO_SUCH_VAR is not set"):
        asyncio.run(authenticate(Remote(("PLAIN",)), SaslSettings("PLAIN", "link", password_env="UMBRA_TEST_NO_SUCH_VAR")))
    with pytest.raises(SaslAuthenticationError, match="cannot read it"):
        asyncio.run(authenticate(Remote(("PLAIN",)), SaslSettings("PLAIN", "link",
                                                                   password_file=str(tmp_path / "absent"))))


def test_a_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMBRA_TEST_SOURCE_PASSWORD", PASSWORD)
    remote = Remote(("SCRAM-SHA-512",))
    asyncio.run(authenticate(remote, SaslSettings("SCRAM-SHA-512", "link", password_env="UMBRA_TEST_SOURCE_PASSWORD")))
    assert remote.authenticated == "link"
