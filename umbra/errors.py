"""Kafka error codes and the exceptions that carry them.

Every layer raises a subclass of :class:`KafkaError`; handlers map it to a wire
error code in one place (``umbra.server.handlers.common``).
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    STALE_CONTROLLER_EPOCH = 11
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    SECURITY_DISABLED = 54
    OPERATION_NOT_ATTEMPTED = 55
    KAFKA_STORAGE_ERROR = 56
    LOG_DIR_NOT_FOUND = 57
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    REASSIGNMENT_IN_PROGRESS = 60
    INVALID_PRINCIPAL_TYPE = 67
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    LISTENER_NOT_FOUND = 72
    TOPIC_DELETION_DISABLED = 73
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    STALE_BROKER_EPOCH = 77
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    PREFERRED_LEADER_NOT_AVAILABLE = 80
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83
    ELECTION_NOT_NEEDED = 84
    NO_REASSIGNMENT_IN_PROGRESS = 85
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93
    INCONSISTENT_VOTER_SET = 94
    INVALID_UPDATE_VERSION = 95
    FEATURE_UPDATE_FAILED = 96
    PRINCIPAL_DESERIALIZATION_FAILURE = 97
    SNAPSHOT_NOT_FOUND = 98
    POSITION_OUT_OF_RANGE = 99
    UNKNOWN_TOPIC_ID = 100
    DUPLICATE_BROKER_REGISTRATION = 101
    BROKER_ID_NOT_REGISTERED = 102
    INCONSISTENT_TOPIC_ID = 103
    INCONSISTENT_CLUSTER_ID = 104
    TRANSACTIONAL_ID_NOT_FOUND = 105
    FETCH_SESSION_TOPIC_ID_ERROR = 106
    INELIGIBLE_REPLICA = 107
    NEW_LEADER_ELECTED = 108
    OFFSET_MOVED_TO_TIERED_STORAGE = 109
    FENCED_MEMBER_EPOCH = 110
    UNRELEASED_INSTANCE_ID = 111
    UNSUPPORTED_ASSIGNOR = 112
    STALE_MEMBER_EPOCH = 113
    MISMATCHED_ENDPOINT_TYPE = 114
    UNSUPPORTED_ENDPOINT_TYPE = 115
    UNKNOWN_CONTROLLER_ID = 116
    UNKNOWN_SUBSCRIPTION_ID = 117
    TELEMETRY_TOO_LARGE = 118
    INVALID_REGISTRATION = 119
    TRANSACTION_ABORTABLE = 120
    INVALID_RECORD_STATE = 121
    SHARE_SESSION_NOT_FOUND = 122
    INVALID_SHARE_SESSION_EPOCH = 123
    FENCED_STATE_EPOCH = 124
    INVALID_VOTER_KEY = 125
    DUPLICATE_VOTER = 126
    VOTER_NOT_FOUND = 127
    INVALID_REGULAR_EXPRESSION = 128


class KafkaError(Exception):
    """An error with a Kafka error code. The message goes to the client where the API has a field for it."""

    code: ErrorCode = ErrorCode.UNKNOWN_SERVER_ERROR
    retriable: bool = False

    def __init__(self, message: str = "", code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


def _error(name: str, code: ErrorCode, retriable: bool = False) -> type[KafkaError]:
    return type(name, (KafkaError,), {"code": code, "retriable": retriable})


OffsetOutOfRange = _error("OffsetOutOfRange", ErrorCode.OFFSET_OUT_OF_RANGE)
CorruptMessage = _error("CorruptMessage", ErrorCode.CORRUPT_MESSAGE, retriable=True)
UnknownTopicOrPartition = _error("UnknownTopicOrPartition", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, True)
NotLeaderOrFollower = _error("NotLeaderOrFollower", ErrorCode.NOT_LEADER_OR_FOLLOWER, True)
MessageTooLarge = _error("MessageTooLarge", ErrorCode.MESSAGE_TOO_LARGE)
InvalidTopic = _error("InvalidTopic", ErrorCode.INVALID_TOPIC_EXCEPTION)
InvalidRequiredAcks = _error("InvalidRequiredAcks", ErrorCode.INVALID_REQUIRED_ACKS)
InvalidTimestamp = _error("InvalidTimestamp", ErrorCode.INVALID_TIMESTAMP)
UnsupportedVersion = _error("UnsupportedVersion", ErrorCode.UNSUPPORTED_VERSION)
TopicAlreadyExists = _error("TopicAlreadyExists", ErrorCode.TOPIC_ALREADY_EXISTS)
InvalidPartitions = _error("InvalidPartitions", ErrorCode.INVALID_PARTITIONS)
InvalidReplicationFactor = _error("InvalidReplicationFactor", ErrorCode.INVALID_REPLICATION_FACTOR)
InvalidConfig = _error("InvalidConfig", ErrorCode.INVALID_CONFIG)
InvalidRequest = _error("InvalidRequest", ErrorCode.INVALID_REQUEST)
UnsupportedForMessageFormat = _error("UnsupportedForMessageFormat", ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT)
PolicyViolation = _error("PolicyViolation", ErrorCode.POLICY_VIOLATION)
OutOfOrderSequence = _error("OutOfOrderSequence", ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
DuplicateSequence = _error("DuplicateSequence", ErrorCode.DUPLICATE_SEQUENCE_NUMBER)
InvalidProducerEpoch = _error("InvalidProducerEpoch", ErrorCode.INVALID_PRODUCER_EPOCH)
UnknownProducerId = _error("UnknownProducerId", ErrorCode.UNKNOWN_PRODUCER_ID)
KafkaStorageError = _error("KafkaStorageError", ErrorCode.KAFKA_STORAGE_ERROR, True)


class InvalidRecord(KafkaError):  # a class of its own: RecordValidationError (KIP-467) refines it
    code = ErrorCode.INVALID_RECORD


UnsupportedCompressionType = _error("UnsupportedCompressionType", ErrorCode.UNSUPPORTED_COMPRESSION_TYPE)
FencedLeaderEpoch = _error("FencedLeaderEpoch", ErrorCode.FENCED_LEADER_EPOCH, True)
UnknownLeaderEpoch = _error("UnknownLeaderEpoch", ErrorCode.UNKNOWN_LEADER_EPOCH, True)
NotEnoughReplicas = _error("NotEnoughReplicas", ErrorCode.NOT_ENOUGH_REPLICAS, True)
NotController = _error("NotController", ErrorCode.NOT_CONTROLLER, True)
InvalidReplicaAssignment = _error("InvalidReplicaAssignment", ErrorCode.INVALID_REPLICA_ASSIGNMENT)
NoReassignmentInProgress = _error("NoReassignmentInProgress", ErrorCode.NO_REASSIGNMENT_IN_PROGRESS)
CoordinatorNotAvailable = _error("CoordinatorNotAvailable", ErrorCode.COORDINATOR_NOT_AVAILABLE, True)
NotCoordinator = _error("NotCoordinator", ErrorCode.NOT_COORDINATOR, True)
InvalidGroupId = _error("InvalidGroupId", ErrorCode.INVALID_GROUP_ID)
GroupIdNotFound = _error("GroupIdNotFound", ErrorCode.GROUP_ID_NOT_FOUND)
NonEmptyGroup = _error("NonEmptyGroup", ErrorCode.NON_EMPTY_GROUP)
FetchSessionIdNotFound = _error("FetchSessionIdNotFound", ErrorCode.FETCH_SESSION_ID_NOT_FOUND, True)
InvalidFetchSessionEpoch = _error("InvalidFetchSessionEpoch", ErrorCode.INVALID_FETCH_SESSION_EPOCH, True)
UnknownTopicId = _error("UnknownTopicId", ErrorCode.UNKNOWN_TOPIC_ID, True)
TopicAuthorizationFailed = _error("TopicAuthorizationFailed", ErrorCode.TOPIC_AUTHORIZATION_FAILED)
GroupAuthorizationFailed = _error("GroupAuthorizationFailed", ErrorCode.GROUP_AUTHORIZATION_FAILED)
ClusterAuthorizationFailed = _error("ClusterAuthorizationFailed", ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
TransactionalIdAuthorizationFailed = _error("TransactionalIdAuthorizationFailed",
                                            ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
