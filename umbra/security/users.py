"""The SCRAM users: user name -> mechanism -> :class:`ScramCredential`, one cluster-wide document.

The document is ``scram_users`` in the control plane (:data:`SCRAM_USERS_DOCUMENT`): a file in the data
directory of a single broker, a key in etcd on a cluster. It holds salts, iteration counts and the keys derived
from salted passwords; never a password, nor a salted password::

    {"version": 1, "users": {"alice": {"SCRAM-SHA-256": {"salt": "<base64>", "iterations": 4096,
                                                         "stored_key": "<base64>", "server_key": "<base64>"}}}}

The rules of AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554) are here as pure functions
(:func:`plan_alter`, :func:`describe_users`); the wire mapping is ``umbra/server/handlers/scram_users.py``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from umbra.errors import ErrorCode, KafkaError
from umbra.security.scram import MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential, ScramMechanism

SCRAM_USERS_DOCUMENT = "scram_users"
MAX_NAME_LENGTH = 255
_FORMAT_VERSION = 1


class ScramUsersCorrupt(KafkaError):
    """The users document cannot be read: nobody can authenticate with SCRAM until it is repaired."""


def validate_user_name(name: str) -> None:
    """ValueError naming what is wrong: empty, longer than 255 characters, or holding a control character
    (NUL would end the name in SASL/PLAIN)."""
    if not name:
        raise ValueError("a user name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a user name is at most {MAX_NAME_LENGTH} characters, not {len(name)}")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError(f"user name {name!r} holds a control character")


@dataclass(frozen=True, slots=True)
class ScramUsers:
    """Every SCRAM user and its credentials (a value: changes return a new one)."""

    users: Mapping[str, Mapping[ScramMechanism, ScramCredential]] = field(
        default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return len(self.users)

    def __contains__(self, name: object) -> bool:
        return name in self.users

    def names(self) -> list[str]:
        return sorted(self.users)

    def credentials(self, name: str) -> list[ScramCredential]:
        """The user's credentials, SCRAM-SHA-256 first; empty for an unknown user."""
        found = self.users.get(name, {})
        return [found[m] for m in ScramMechanism if m in found]

    def credential(self, name: str, mechanism: ScramMechanism) -> ScramCredential | None:
        return self.users.get(name, {}).get(mechanism)

    def lookup(self, mechanism: ScramMechanism) -> Callable[[str], ScramCredential | None]:
        """What a SCRAM server exchange of ``mechanism`` asks for a user name."""
        return lambda name: self.credential(name, mechanism)

    def with_credential(self, name: str, credential: ScramCredential) -> ScramUsers:
        validate_user_name(name)
        users = dict(self.users)
        users[name] = MappingProxyType({**users.get(name, {}), credential.mechanism: credential})
        return ScramUsers(MappingProxyType(users))

    def without(self, name: str, mechanism: ScramMechanism | None = None) -> ScramUsers:
        """Without the user's credential for ``mechanism`` (None: all of them). A user left with none is gone."""
        users = dict(self.users)
        remaining = {m: c for m, c in users.get(name, {}).items() if mechanism is not None and m is not mechanism}
        if remaining:
            users[name] = MappingProxyType(remaining)
        else:
            users.pop(name, None)
        return ScramUsers(MappingProxyType(users))

    def to_document(self) -> dict[str, object]:
        users = {}
        for name in self.names():
            users[name] = {c.mechanism.value: {k: v for k, v in c.to_json().items() if k != "mechanism"}
                           for c in self.credentials(name)}
        return {"version": _FORMAT_VERSION, "users": users}

    @classmethod
    def from_document(cls, document: object) -> ScramUsers:
        """The users of a document (None: no users yet). ScramUsersCorrupt says what is wrong."""
        if document is None:
            return cls()
        if not isinstance(document, Mapping) or document.get("version") != _FORMAT_VERSION:
            raise ScramUsersCorrupt(f"the {SCRAM_USERS_DOCUMENT} document is not a version {_FORMAT_VERSION} "
                                    "users document")
        entries = document.get("users")
        if not isinstance(entries, Mapping):
            raise ScramUsersCorrupt(f"the {SCRAM_USERS_DOCUMENT} document has no users object")
        users: dict[str, Mapping[ScramMechanism, ScramCredential]] = {}
        for name, by_mechanism in entries.items():
            try:
                validate_user_name(name)
                if not isinstance(by_mechanism, Mapping) or not by_mechanism:
                    raise ValueError("no credentials")
                credentials = [ScramCredential.from_json({**entry, "mechanism": mechanism})
                               for mechanism, entry in by_mechanism.items() if isinstance(entry, Mapping)]
                if len(credentials) != len(by_mechanism):
                    raise ValueError("a credential is not a JSON object")
            except ValueError as exc:
                raise ScramUsersCorrupt(f"the {SCRAM_USERS_DOCUMENT} document: user {name!r}: {exc}") from None
            users[name] = MappingProxyType({c.mechanism: c for c in credentials})
        return cls(MappingProxyType(users))


class ScramUsersCache:
    """Parses each version of the document once: every SASL login reads the users."""

    def __init__(self) -> None:
        self._document: object = _UNSET
        self._users = ScramUsers()

    def users(self, document: object) -> ScramUsers:
        """The users of ``document`` (the control plane's current object: compared by identity)."""
        if document is not self._document:
            users = ScramUsers.from_document(document)
            self._document, self._users = document, users
        return self._users


_UNSET = object()


# --- AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554) ------------------------------------
@dataclass(frozen=True, slots=True)
class CredentialDeletion:
    name: str
    mechanism_code: int


@dataclass(frozen=True, slots=True)
class CredentialUpsertion:
    """What the client sends: it salted the password itself; the broker derives and keeps the keys only."""

    name: str
    mechanism_code: int
    iterations: int
    salt: bytes
    salted_password: bytes = field(repr=False)


def _error(code: ErrorCode, message: str) -> KafkaError:
    return KafkaError(message, code)


def _check_name(name: str) -> KafkaError | None:
    try:
        validate_user_name(name)
    except ValueError as exc:
        return _error(ErrorCode.UNACCEPTABLE_CREDENTIAL, str(exc))
    return None


def _mechanism(code: int) -> ScramMechanism | KafkaError:
    mechanism = ScramMechanism.from_code(code)
    if mechanism is None:
        return _error(ErrorCode.UNSUPPORTED_SASL_MECHANISM, f"Unknown SCRAM mechanism {code}")
    return mechanism


def _credential(upsertion: CredentialUpsertion) -> ScramCredential | KafkaError:
    mechanism = _mechanism(upsertion.mechanism_code)
    if isinstance(mechanism, KafkaError):
        return mechanism
    if upsertion.iterations < MIN_ITERATIONS:
        return _error(ErrorCode.UNACCEPTABLE_CREDENTIAL, f"Too few iterations: {upsertion.iterations} (at least "
                                                         f"{MIN_ITERATIONS})")
    if upsertion.iterations > MAX_ITERATIONS:
        return _error(ErrorCode.UNACCEPTABLE_CREDENTIAL, f"Too many iterations: {upsertion.iterations} (at most "
                                                         f"{MAX_ITERATIONS})")
    try:
        return ScramCredential.from_salted_password(mechanism, upsertion.salt, upsertion.salted_password,
                                                    upsertion.iterations)
    except ValueError as exc:
        return _error(ErrorCode.UNACCEPTABLE_CREDENTIAL, str(exc))


def plan_alter(users: ScramUsers, deletions: Sequence[CredentialDeletion],
               upsertions: Sequence[CredentialUpsertion]) -> tuple[list[tuple[str, KafkaError | None]], ScramUsers]:
    """Kafka's AlterUserScramCredentials: one result per user named (in the order first named), and the users
    after the changes that succeed. A user named twice in the request (whatever the mechanisms) is
    DUPLICATE_RESOURCE and nothing of it changes; an unknown mechanism is UNSUPPORTED_SASL_MECHANISM; iterations
    outside 4096..16384, an empty salt or a salted password of the wrong size are UNACCEPTABLE_CREDENTIAL;
    deleting a credential that does not exist is RESOURCE_NOT_FOUND."""
    named = [d.name for d in deletions] + [u.name for u in upsertions]
    results: dict[str, KafkaError | None] = {}
    for name in named:
        if name in results:
            results[name] = _error(ErrorCode.DUPLICATE_RESOURCE,
                                   f"A user credential cannot be altered twice in the same request: {name!r}")
        else:
            results[name] = _check_name(name)
    updated = users
    for deletion in deletions:
        if results[deletion.name] is not None:
            continue
        mechanism = _mechanism(deletion.mechanism_code)
        if isinstance(mechanism, KafkaError):
            results[deletion.name] = mechanism
        elif updated.credential(deletion.name, mechanism) is None:
            results[deletion.name] = _error(ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential "
                                            f"that does not exist: {deletion.name!r} {mechanism.value}")
        else:
            updated = updated.without(deletion.name, mechanism)
    for upsertion in upsertions:
        if results[upsertion.name] is not None:
            continue
        credential = _credential(upsertion)
        if isinstance(credential, KafkaError):
            results[upsertion.name] = credential
        else:
            updated = updated.with_credential(upsertion.name, credential)
    return list(results.items()), updated


@dataclass(frozen=True, slots=True)
class UserDescription:
    name: str
    error: KafkaError | None
    credentials: tuple[tuple[ScramMechanism, int], ...]  # (mechanism, iterations): never a secret


def describe_users(users: ScramUsers, names: Iterable[str] | None) -> list[UserDescription]:
    """Kafka's DescribeUserScramCredentials: every user for None or no names; else each name once, in order,
    RESOURCE_NOT_FOUND for an unknown user and DUPLICATE_RESOURCE for a name asked for twice."""
    asked = list(names or [])
    if not asked:
        asked = users.names()
    counts: dict[str, int] = {}
    for name in asked:
        counts[name] = counts.get(name, 0) + 1
    described = []
    for name, count in counts.items():
        if count > 1:
            described.append(UserDescription(name, _error(
                ErrorCode.DUPLICATE_RESOURCE,
                f"Cannot describe SCRAM credentials for the same user twice in a single request: {name}"), ()))
        elif name not in users:
            described.append(UserDescription(name, _error(
                ErrorCode.RESOURCE_NOT_FOUND, f"Attempt to describe a user credential that does not exist: {name}"),
                ()))
        else:
            described.append(UserDescription(
                name, None, tuple((c.mechanism, c.iterations) for c in users.credentials(name))))
    return described
