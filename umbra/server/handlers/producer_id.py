"""InitProducerId (22): producer ids and epochs for idempotent producers (no transactions yet)."""

from __future__ import annotations

from typing import Any

from umbra.errors import ClusterAuthorizationFailed, ErrorCode
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles

MAX_EPOCH = 32767


@handles(22, "InitProducerId", 0, 5)
async def handle_init_producer_id(ctx: RequestContext, request: Any) -> dict[str, Any]:
    broker = ctx.broker
    if request.transactional_id is not None:
        # Transactions are not implemented: refused as Kafka refuses a transactional id the principal may not
        # WRITE, whatever the ACLs say (rather than pretend).
        return {"throttle_time_ms": 0, "error_code": int(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                "producer_id": -1, "producer_epoch": -1}
    # An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or (KIP-679) WRITE on any topic.
    if not (ctx.authorized_cluster(AclOperation.IDEMPOTENT_WRITE)
            or ctx.authorized_on_any(AclOperation.WRITE, ResourceType.TOPIC)):
        raise ClusterAuthorizationFailed(f"{ctx.principal} may neither IDEMPOTENT_WRITE the cluster nor WRITE any "
                                         "topic")
    producer_id = request.producer_id if ctx.api_version >= 3 else -1
    producer_epoch = request.producer_epoch if ctx.api_version >= 3 else -1
    if producer_id >= 0 and 0 <= producer_epoch < MAX_EPOCH - 1:
        # KIP-360: an idempotent producer bumps its epoch and keeps its id.
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": producer_id,
                "producer_epoch": producer_epoch + 1}
    return {"throttle_time_ms": 0, "error_code": 0, "producer_id": await broker.allocate_producer_id(),
            "producer_epoch": 0}
