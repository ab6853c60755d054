"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), v0 (KIP-554).

The users are the ``scram_users`` document of the control plane: a file of a single broker, a key in etcd on
a cluster, where any broker changes it by compare-and-swap (Kafka sends these requests to its controller) and
every broker takes each new version when it reads it. Upsertions carry a salt and a salted password (the client
derived it); the broker keeps only the keys derived from it. Describe returns mechanisms and iterations, never
a secret. The rules (error codes, duplicates) are in :mod:`umbra.security.users`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from umbra.cluster.control import ControlPlaneError
from umbra.errors import ClusterAuthorizationFailed, ErrorCode, KafkaError
from umbra.security.acls import AclOperation
from umbra.security.users import (
    SCRAM_USERS_DOCUMENT,
    CredentialDeletion,
    CredentialUpsertion,
    ScramUsers,
    ScramUsersCache,
    describe_users,
    plan_alter,
)
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.topics import error_fields

if TYPE_CHECKING:
    from umbra.server.broker import Broker

log = logging.getLogger("umbra.security")
_CACHE = ScramUsersCache()


def current_users(broker: Broker) -> ScramUsers:
    """The SCRAM users as this broker last read them. ScramUsersCorrupt if the document cannot be read."""
    return _CACHE.users(broker.control.document(SCRAM_USERS_DOCUMENT))


@handles(50, "DescribeUserScramCredentials", 0, 0)
async def handle_describe_user_scram_credentials(ctx: RequestContext, request: Any) -> dict[str, Any]:
    try:
        ctx.require_cluster(AclOperation.DESCRIBE)  # denied: CLUSTER_AUTHORIZATION_FAILED for the whole response
        users = current_users(ctx.broker)
    except KafkaError as exc:
        return {"throttle_time_ms": 0, "error_code": int(exc.code), "error_message": exc.message, "results": []}
    names = None if request.users is None else [item.name or "" for item in request.users]
    results = []
    for described in describe_users(users, names):
        error = described.error
        results.append({"user": described.name, "error_code": 0 if error is None else int(error.code),
                        "error_message": None if error is None else error.message,
                        "credential_infos": [{"mechanism": mechanism.type_code, "iterations": iterations}
                                             for mechanism, iterations in described.credentials]})
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "results": results}


@handles(51, "AlterUserScramCredentials", 0, 0)
async def handle_alter_user_scram_credentials(ctx: RequestContext, request: Any) -> dict[str, Any]:
    # A name the codec read as null (the wire allows it, the schema does not) is an empty name: refused.
    deletions = [CredentialDeletion(item.name or "", item.mechanism) for item in request.deletions or []]
    upsertions = [CredentialUpsertion(item.name or "", item.mechanism, item.iterations, bytes(item.salt or b""),
                                      bytes(item.salted_password or b""))
                  for item in request.upsertions or []]
    names = list(dict.fromkeys([d.name for d in deletions] + [u.name for u in upsertions]))
    if not ctx.authorized_cluster(AclOperation.ALTER):  # Kafka: every user named fails, nothing changes
        denied = ClusterAuthorizationFailed(f"{ctx.principal} may not ALTER the cluster")
        return {"throttle_time_ms": 0, "results": [_result(name, int(denied.code), denied.message)
                                                   for name in names]}
    try:
        results, _ = plan_alter(current_users(ctx.broker), deletions, upsertions)
        if any(error is None for _, error in results):  # something changes: plan again on the stored document
            outcome: list[list[tuple[str, KafkaError | None]]] = []

            def change(document: Any) -> Any:
                planned, updated = plan_alter(ScramUsers.from_document(document), deletions, upsertions)
                outcome[:] = [planned]
                return updated.to_document()

            await ctx.broker.control.update_document(SCRAM_USERS_DOCUMENT, change)
            results = outcome[0]
            deleted = {d.name for d in deletions}
            log.info("SCRAM credentials changed: %s", ", ".join(
                f"{name} ({'deleted' if name in deleted else 'set'})" for name, error in results if error is None))
    except ControlPlaneError as exc:
        failure = (int(ErrorCode.UNKNOWN_SERVER_ERROR), f"the users document cannot be changed: {exc}")
        return {"throttle_time_ms": 0, "results": [_result(name, *failure) for name in names]}
    except (KafkaError, OSError) as exc:
        failure = error_fields(exc, "AlterUserScramCredentials")
        return {"throttle_time_ms": 0, "results": [_result(name, *failure) for name in names]}
    return {"throttle_time_ms": 0, "results": [
        _result(name, 0, None) if error is None else _result(name, int(error.code), error.message)
        for name, error in results]}


def _result(user: str, error_code: int, error_message: str | None) -> dict[str, Any]:
    return {"user": user, "error_code": error_code, "error_message": error_message}
