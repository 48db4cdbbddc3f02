"""The one place where protobuf messages meet domain values and stored rows, for the edges."""

from __future__ import annotations

from runwire_server.convert.resources import (
    concurrency_limit_to_proto,
    deployment_to_proto,
    flow_run_policy_from_proto,
    flow_run_policy_to_proto,
    flow_run_to_proto,
    flow_to_proto,
    graph_node_to_proto,
    keep_run_messages,
    log_to_proto,
    outcome_to_proto,
    run_timing,
    task_run_policy_from_proto,
    task_run_to_proto,
)
from runwire_server.convert.scalars import (
    dict_to_struct,
    duration,
    format_id,
    struct_to_dict,
    timestamp,
)
from runwire_server.convert.server_info import server_info_to_proto
from runwire_server.convert.states import (
    details_from_proto,
    details_to_proto,
    lease_fields,
    parse_proposed_state,
    result_from_proto,
    result_reference,
    result_to_proto,
    stamp,
    state_row_to_proto,
    state_to_proto,
)

__all__ = [
    "concurrency_limit_to_proto",
    "deployment_to_proto",
    "details_from_proto",
    "details_to_proto",
    "dict_to_struct",
    "duration",
    "flow_run_policy_from_proto",
    "flow_run_policy_to_proto",
    "flow_run_to_proto",
    "flow_to_proto",
    "format_id",
    "graph_node_to_proto",
    "keep_run_messages",
    "lease_fields",
    "log_to_proto",
    "outcome_to_proto",
    "parse_proposed_state",
    "result_from_proto",
    "result_reference",
    "result_to_proto",
    "run_timing",
    "server_info_to_proto",
    "stamp",
    "state_row_to_proto",
    "state_to_proto",
    "struct_to_dict",
    "task_run_policy_from_proto",
    "task_run_to_proto",
    "timestamp",
]
