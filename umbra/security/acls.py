"""ACL bindings, filters with Kafka's matching semantics, and the broker's persistent ACL store.

The numeric codes of every enum are Kafka's wire codes, so a binding goes to and from the protocol
unchanged. An :class:`AclBinding` is a plain value; :func:`validate_binding` says whether it may be
stored. An :class:`AclFilter` selects bindings for DescribeAcls and DeleteAcls (and for the shadow
link's ACL syncer).
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from umbra.errors import InvalidRequest, KafkaError, KafkaStorageError
from umbra.storage.checkpoint import write_atomically

log = logging.getLogger("umbra.security.acls")

WILDCARD = "*"
"""A literal resource name or host that matches every name or host."""

WILDCARD_PRINCIPAL = "User:*"
"""The principal that matches every principal."""


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only: any pattern type, names compared exactly
    MATCH = 2  # filters only: the patterns that would apply to the named resource
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class PermissionType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    DENY = 2
    ALLOW = 3


E = TypeVar("E", bound=enum.IntEnum)


def from_code(enum_type: type[E], code: int) -> E:
    """The member with wire code ``code``; codes this broker does not know are UNKNOWN, as in Kafka."""
    try:
        return enum_type(code)
    except ValueError:
        return enum_type(0)


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: a resource pattern and an access control entry. Use :func:`validate_binding` before storing."""

    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission_type: PermissionType

    @classmethod
    def from_codes(cls, resource_type: int, resource_name: str, pattern_type: int, principal: str, host: str,
                   operation: int, permission_type: int) -> AclBinding:
        """A binding from wire codes (unknown codes become UNKNOWN, which validation refuses)."""
        return cls(from_code(ResourceType, resource_type), resource_name, from_code(PatternType, pattern_type),
                   principal, host, from_code(AclOperation, operation), from_code(PermissionType, permission_type))

    def __str__(self) -> str:
        return (f"{self.permission_type.name} {self.principal} from {self.host} {self.operation.name} on "
                f"{self.resource_type.name} {self.pattern_type.name} {self.resource_name!r}")


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Selects bindings: ANY (or None for strings) matches everything; see :meth:`matches`."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission_type: PermissionType = PermissionType.ANY

    @classmethod
    def from_codes(cls, resource_type: int, resource_name: str | None, pattern_type: int, principal: str | None,
                   host: str | None, operation: int, permission_type: int) -> AclFilter:
        return cls(from_code(ResourceType, resource_type), resource_name, from_code(PatternType, pattern_type),
                   principal, host, from_code(AclOperation, operation), from_code(PermissionType, permission_type))

    @classmethod
    def exactly(cls, binding: AclBinding) -> AclFilter:
        """The filter that matches ``binding`` and nothing else."""
        return cls(binding.resource_type, binding.resource_name, binding.pattern_type, binding.principal,
                   binding.host, binding.operation, binding.permission_type)

    def validate(self) -> None:
        """Raise InvalidRequest if a field is UNKNOWN (a code this broker does not know), as Kafka does."""
        for field, value in (("resource type", self.resource_type), ("pattern type", self.pattern_type),
                             ("operation", self.operation), ("permission type", self.permission_type)):
            if value == 0:
                raise InvalidRequest(f"ACL filter has an unknown {field}; use a known code, or ANY to match every "
                                     f"{field}")

    def matches(self, binding: AclBinding) -> bool:
        return self.matches_pattern(binding) and self.matches_entry(binding)

    def matches_pattern(self, binding: AclBinding) -> bool:
        """Kafka's ResourcePatternFilter.matches.

        With a name, ANY and a concrete pattern type compare names exactly; MATCH selects the patterns
        that apply to a resource of that name: the literal name, the literal wildcard, and every prefix.
        """
        if self.resource_type != ResourceType.ANY and self.resource_type != binding.resource_type:
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH) and self.pattern_type != binding.pattern_type:
            return False
        if self.resource_name is None:
            return True
        if self.pattern_type != PatternType.MATCH:
            return self.resource_name == binding.resource_name
        if binding.pattern_type == PatternType.LITERAL:
            return binding.resource_name in (self.resource_name, WILDCARD)
        if binding.pattern_type == PatternType.PREFIXED:
            return self.resource_name.startswith(binding.resource_name)
        return False

    def matches_entry(self, binding: AclBinding) -> bool:
        """Kafka's AccessControlEntryFilter.matches: principal and host compare exactly (no wildcard expansion)."""
        return ((self.principal is None or self.principal == binding.principal)
                and (self.host is None or self.host == binding.host)
                and self.operation in (AclOperation.ANY, binding.operation)
                and self.permission_type in (PermissionType.ANY, binding.permission_type))


MATCH_ALL = AclFilter()

_CONCRETE_RESOURCE_TYPES = ", ".join(t.name for t in ResourceType if t > ResourceType.ANY)
_CONCRETE_OPERATIONS = ", ".join(o.name for o in AclOperation if o > AclOperation.ANY)


def validate_binding(binding: AclBinding) -> None:
    """Raise InvalidRequest (with a message saying what to send instead) if ``binding`` may not be stored.

    The rules are Kafka's controller's: concrete types only (no UNKNOWN, ANY or MATCH), a non-empty
    resource name, and a principal of the form ``Type:name``; umbra also wants a non-empty host.
    """
    if binding.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        raise InvalidRequest(f"invalid resource type {binding.resource_type.name} for an ACL: use one of "
                             f"{_CONCRETE_RESOURCE_TYPES}")
    if binding.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        raise InvalidRequest(f"invalid pattern type {binding.pattern_type.name} for an ACL: use LITERAL or PREFIXED "
                             "(ANY and MATCH are only for filters)")
    if binding.operation in (AclOperation.UNKNOWN, AclOperation.ANY):
        raise InvalidRequest(f"invalid operation {binding.operation.name} for an ACL: use one of "
                             f"{_CONCRETE_OPERATIONS}")
    if binding.permission_type not in (PermissionType.ALLOW, PermissionType.DENY):
        raise InvalidRequest(f"invalid permission type {binding.permission_type.name} for an ACL: use ALLOW or DENY")
    if not binding.resource_name:
        raise InvalidRequest("the resource name of an ACL must not be empty (use '*' for every resource)")
    principal_type, colon, principal_name = (binding.principal or "").partition(":")
    if not colon or not principal_type or not principal_name:
        raise InvalidRequest(f"could not parse principal {binding.principal!r}: expected Type:name, "
                             "such as 'User:alice' (or 'User:*' for everyone)")
    if not binding.host:
        raise InvalidRequest("the host of an ACL must not be empty (use '*' for every host)")


# --- persistence -------------------------------------------------------------------------------------------
class AclStoreCorrupt(Exception):
    """``acls.json`` cannot be read. The broker refuses to start rather than run with ACLs silently lost."""


_FORMAT_VERSION = 1


def _binding_to_json(binding: AclBinding) -> dict[str, str]:
    return {"resource_type": binding.resource_type.name, "resource_name": binding.resource_name,
            "pattern_type": binding.pattern_type.name, "principal": binding.principal, "host": binding.host,
            "operation": binding.operation.name, "permission_type": binding.permission_type.name}


def _binding_from_json(item: Any) -> AclBinding:
    # Names, not codes, so the file reads well; KeyError/TypeError on a bad entry are reported by the caller.
    binding = AclBinding(ResourceType[item["resource_type"]], str(item["resource_name"]),
                         PatternType[item["pattern_type"]], str(item["principal"]), str(item["host"]),
                         AclOperation[item["operation"]], PermissionType[item["permission_type"]])
    validate_binding(binding)
    return binding


class AclStore:
    """Every ACL of this broker, in creation order, persisted to ``<data_dir>/acls.json``.

    Each change rewrites the file atomically (temporary file, fsync, rename, fsync of the directory)
    before it is visible; a failed write leaves memory and disk as they were.
    """

    FILE = "acls.json"

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / self.FILE
        self._lock = threading.Lock()  # the admin API may read from another thread
        self._bindings: dict[AclBinding, None] = dict.fromkeys(self._load())
        # Bumped by every change (each replaces the bindings as a whole): caches of decisions compare it.
        self.generation = 0

    def _load(self) -> list[AclBinding]:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return []
        try:
            document = json.loads(text)
            if document.get("version") != _FORMAT_VERSION:
                raise ValueError(f"unsupported format version {document.get('version')!r}")
            entries = document["acls"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AclStoreCorrupt(f"{self.path}: {exc}") from exc
        bindings = []
        for index, entry in enumerate(entries):
            try:
                bindings.append(_binding_from_json(entry))
            except (KeyError, TypeError, KafkaError) as exc:
                raise AclStoreCorrupt(f"{self.path}: ACL #{index} ({entry!r}) is invalid: {exc!r}") from exc
        return bindings

    def _save(self, bindings: Iterable[AclBinding]) -> None:
        document = {"version": _FORMAT_VERSION, "acls": [_binding_to_json(b) for b in bindings]}
        try:
            write_atomically(self.path, json.dumps(document, indent=1) + "\n")
        except OSError as exc:
            log.error("writing %s failed: %s", self.path, exc)
            raise KafkaStorageError(f"could not persist ACLs: {exc}") from exc

    def __len__(self) -> int:
        return len(self._bindings)

    def all(self) -> list[AclBinding]:
        with self._lock:
            return list(self._bindings)

    def snapshot(self) -> tuple[int, list[AclBinding]]:
        """The generation and the bindings of that generation, read together."""
        with self._lock:
            return self.generation, list(self._bindings)

    def describe(self, acl_filter: AclFilter) -> list[AclBinding]:
        """The stored bindings that ``acl_filter`` matches. Raises InvalidRequest for an invalid filter."""
        acl_filter.validate()
        with self._lock:
            return [b for b in self._bindings if acl_filter.matches(b)]

    def replace_all(self, bindings: Sequence[AclBinding]) -> None:
        """Take a cluster's ACLs as they are in the control plane (persisted here too, as a copy)."""
        with self._lock:
            candidate = dict.fromkeys(bindings)
            if list(candidate) == list(self._bindings):
                return
            self._save(candidate)
            self._bindings = candidate
            self.generation += 1

    def add(self, bindings: Sequence[AclBinding]) -> list[KafkaError | None]:
        """Store each valid binding. Returns one entry per binding: None, or the error that refused it.

        Adding a binding that is already stored succeeds and changes nothing.
        """
        with self._lock:
            results, candidate = plan_add(list(self._bindings), bindings)
            added = [i for i, binding in enumerate(bindings) if results[i] is None and binding not in self._bindings]
            if added:
                try:
                    self._save(candidate)
                except KafkaError as exc:
                    for index in added:
                        results[index] = exc
                    return results
                self._bindings = dict.fromkeys(candidate)
                self.generation += 1
        for index in added:
            log.info("created ACL: %s", bindings[index])
        return results

    def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        """Remove every binding that any filter matches; returns, per filter, the bindings it matched.

        Filters are applied to the bindings stored when the call began, so a binding matched by two
        filters is listed under both (and removed once). Raises InvalidRequest, changing nothing, if a
        filter is invalid, and KafkaStorageError, changing nothing, if the new set cannot be persisted.
        """
        with self._lock:
            matched, remaining = plan_delete(list(self._bindings), filters)
            kept = set(remaining)
            doomed = [b for b in self._bindings if b not in kept]
            if doomed:
                self._save(remaining)
                self._bindings = dict.fromkeys(remaining)
                self.generation += 1
        for binding in doomed:
            log.info("deleted ACL: %s", binding)
        return matched


# --- the same operations on a list, for a cluster (the control plane holds the list) ------------------------

def acls_to_document(bindings: Iterable[AclBinding]) -> dict[str, Any]:
    return {"version": _FORMAT_VERSION, "acls": [_binding_to_json(b) for b in bindings]}


def acls_from_document(document: Any) -> list[AclBinding]:
    if document is None:
        return []
    return [_binding_from_json(entry) for entry in document.get("acls", [])]


def plan_add(current: Sequence[AclBinding], bindings: Sequence[AclBinding]
             ) -> tuple[list[KafkaError | None], list[AclBinding]]:
    """What :meth:`AclStore.add` does, on a list: (one result per binding, the new list)."""
    results: list[KafkaError | None] = []
    candidate = dict.fromkeys(current)
    for binding in bindings:
        try:
            validate_binding(binding)
        except KafkaError as exc:
            results.append(exc)
            continue
        results.append(None)
        candidate.setdefault(binding, None)
    return results, list(candidate)


def plan_delete(current: Sequence[AclBinding], filters: Sequence[AclFilter]
                ) -> tuple[list[list[AclBinding]], list[AclBinding]]:
    """What :meth:`AclStore.delete` does, on a list: (the bindings each filter matched, the new list)."""
    for acl_filter in filters:
        acl_filter.validate()
    matched = [[b for b in current if f.matches(b)] for f in filters]
    doomed = {b for found in matched for b in found}
    return matched, [b for b in current if b not in doomed]
