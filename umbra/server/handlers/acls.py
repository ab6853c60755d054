"""DescribeAcls (29), CreateAcls (30) and DeleteAcls (31), v0-3, over the broker's :class:`AclStore`.

ACLs are enforced when ``authorization.enabled`` is set; they are stored and served either way (Kafka would
answer SECURITY_DISABLED without an authorizer; umbra keeps them, so that shadow links can mirror a source's
ACLs and ACLs can be written before enforcement is turned on). Describing them needs DESCRIBE on the cluster,
creating and deleting them ALTER. Version 0 has no pattern type: its filters and creations are LITERAL,
which is also what the codec decodes them as.

Each creation and each delete filter succeeds or fails on its own, with a message; DescribeAcls has
one filter, so its error is the response's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from umbra.cluster.control import ControlPlaneError
from umbra.errors import ClusterAuthorizationFailed, KafkaError
from umbra.security.acls import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclStore,
    acls_from_document,
    acls_to_document,
    plan_add,
    plan_delete,
)
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.topics import error_fields

T = TypeVar("T")


def _store(ctx: RequestContext) -> AclStore:
    store: AclStore = ctx.broker.acls
    return store


async def _cluster_change(ctx: RequestContext,
                          plan: Callable[[list[AclBinding]], tuple[T, list[AclBinding]]]) -> T | None:
    """On a cluster, ACLs are one document in etcd, changed by compare-and-swap from any broker; every broker
    takes the new list when it reads it (this one at once). None when etcd cannot be reached."""
    outcome: list[T] = []

    def change(document: Any) -> Any:
        result, updated = plan(acls_from_document(document))
        outcome[:] = [result]
        return acls_to_document(updated)

    try:
        stored = await ctx.broker.control.update_document("acls", change)
    except ControlPlaneError:
        return None
    _store(ctx).replace_all(acls_from_document(stored))
    return outcome[0]


def _filter(item: Any) -> AclFilter:
    return AclFilter.from_codes(item.resource_type_filter, item.resource_name_filter, item.pattern_type_filter,
                                item.principal_filter, item.host_filter, item.operation, item.permission_type)


def _resources(bindings: Iterable[AclBinding]) -> list[dict[str, Any]]:
    """Group bindings by resource pattern, in first-seen order, as DescribeAclsResponse lists them."""
    grouped: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for b in bindings:
        key = (int(b.resource_type), b.resource_name, int(b.pattern_type))
        grouped.setdefault(key, []).append({"principal": b.principal, "host": b.host, "operation": int(b.operation),
                                            "permission_type": int(b.permission_type)})
    return [{"resource_type": rt, "resource_name": name, "pattern_type": pt, "acls": acls}
            for (rt, name, pt), acls in grouped.items()]


def _matching_acl(b: AclBinding) -> dict[str, Any]:
    return {"error_code": 0, "error_message": None, "resource_type": int(b.resource_type),
            "resource_name": b.resource_name, "pattern_type": int(b.pattern_type), "principal": b.principal,
            "host": b.host, "operation": int(b.operation), "permission_type": int(b.permission_type)}


def _alter_denied(ctx: RequestContext) -> KafkaError:
    return ClusterAuthorizationFailed(f"{ctx.principal} is not authorized to ALTER the cluster (create or delete "
                                      "ACLs)")


@handles(29, "DescribeAcls", 0, 3)
async def handle_describe_acls(ctx: RequestContext, request: Any) -> dict[str, Any]:
    try:
        ctx.require_cluster(AclOperation.DESCRIBE)
        bindings = _store(ctx).describe(_filter(request))
    except (KafkaError, OSError) as exc:
        code, message = error_fields(exc, "DescribeAcls")
        return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "resources": []}
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "resources": _resources(bindings)}


@handles(30, "CreateAcls", 0, 3)
async def handle_create_acls(ctx: RequestContext, request: Any) -> dict[str, Any]:
    bindings = [AclBinding.from_codes(c.resource_type, c.resource_name, c.resource_pattern_type, c.principal, c.host,
                                      c.operation, c.permission_type)
                for c in request.creations or []]
    if not ctx.authorized_cluster(AclOperation.ALTER):
        added: list[KafkaError | None] = [_alter_denied(ctx)] * len(bindings)
    elif ctx.broker.clustered:
        outcome = await _cluster_change(ctx, lambda current: plan_add(current, bindings))
        added = outcome if outcome is not None else [
            KafkaError("the control plane (etcd) cannot be reached")] * len(bindings)
    else:
        added = _store(ctx).add(bindings)
    results = []
    for exc in added:
        code, message = (0, None) if exc is None else error_fields(exc, "CreateAcls")
        results.append({"error_code": code, "error_message": message})
    return {"throttle_time_ms": 0, "results": results}


@handles(31, "DeleteAcls", 0, 3)
async def handle_delete_acls(ctx: RequestContext, request: Any) -> dict[str, Any]:
    filters = [_filter(item) for item in request.filters or []]
    if not ctx.authorized_cluster(AclOperation.ALTER):
        code, message = error_fields(_alter_denied(ctx), "DeleteAcls")
        return {"throttle_time_ms": 0, "filter_results": [
            {"error_code": code, "error_message": message, "matching_acls": []} for _ in filters]}
    problems: dict[int, tuple[int, str]] = {}
    for index, acl_filter in enumerate(filters):
        try:
            acl_filter.validate()
        except (KafkaError, OSError) as exc:
            problems[index] = error_fields(exc, "DeleteAcls")
    valid = [index for index in range(len(filters)) if index not in problems]
    matched: dict[int, list[AclBinding]] = {}
    chosen = [filters[i] for i in valid]
    try:
        if ctx.broker.clustered:
            deleted = await _cluster_change(ctx, lambda current: plan_delete(current, chosen))
            if deleted is None:
                raise KafkaError("the control plane (etcd) cannot be reached")
        else:
            deleted = _store(ctx).delete(chosen)
        matched = dict(zip(valid, deleted, strict=True))
    except (KafkaError, OSError) as exc:  # nothing was deleted: every valid filter reports why
        problems.update(dict.fromkeys(valid, error_fields(exc, "DeleteAcls")))
    filter_results = []
    for index in range(len(filters)):
        if index in problems:
            code, message = problems[index]
            filter_results.append({"error_code": code, "error_message": message, "matching_acls": []})
        else:
            filter_results.append({"error_code": 0, "error_message": None,
                                   "matching_acls": [_matching_acl(b) for b in matched[index]]})
    return {"throttle_time_ms": 0, "filter_results": filter_results}
