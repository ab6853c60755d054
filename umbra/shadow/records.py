"""What a shadow link keeps in cluster metadata, as a typed record changed field by field.

A link's record is its spec, its state, and the ACLs its ACL syncer created on this cluster. Every change
replaces only the fields it is about (``dataclasses.replace``), so pausing, resuming or updating a link never
drops what the syncers recorded: an ACL revoked on the source while the link is paused is revoked here once it
resumes, and an ACL this cluster had before the link is never taken for one the link created.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from umbra.security.acls import AclBinding
from umbra.shadow.spec import LinkSpec, parse_link_spec
from umbra.shadow.state import LinkState

log = logging.getLogger("umbra.shadow")


def _binding_codes(binding: AclBinding) -> list[Any]:
    return [int(binding.resource_type), binding.resource_name, int(binding.pattern_type), binding.principal,
            binding.host, int(binding.operation), int(binding.permission_type)]


@dataclass(frozen=True, slots=True)
class LinkRecord:
    spec: LinkSpec
    state: LinkState
    created_acls: frozenset[AclBinding] = frozenset()  # ACLs the ACL syncer created here, and only those

    @property
    def name(self) -> str:
        return self.spec.name

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "state": str(self.state),
                "created_acls": sorted((_binding_codes(b) for b in self.created_acls), key=str)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LinkRecord:
        """Raises ``SpecError`` for a stored spec that no longer parses, ``ValueError`` for a bad state."""
        spec = parse_link_spec(doc["spec"])
        created = frozenset(AclBinding.from_codes(*codes) for codes in doc.get("created_acls", []))
        if "synced_acls" in doc and "created_acls" not in doc:
            # Records before this one listed every ACL the source had, created here or not: deleting by that
            # list could remove ACLs this cluster had of its own, so none of them is taken as created.
            log.warning("shadow link %s: its record from an older version does not say which ACLs it created; "
                        "ACLs revoked on the source before now stay here", spec.name)
        return cls(spec, LinkState(doc.get("state", "ACTIVE")), created)
