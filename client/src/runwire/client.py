"""The synchronous Runwire client: typed calls over the generated stubs."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from runwire import _diagnose
from runwire.connection import ConnectionSettings
from runwire.errors import (
    DeadlineExceeded,
    OutOfRange,
    RunwireError,
    Unavailable,
    from_rpc_error,
)
from runwire.states import Result, State, StateType
from runwire.v1 import (
    concurrency_limit_service_pb2,
    concurrency_limit_service_pb2_grpc,
    deployment_pb2,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    filters_pb2,
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
    orchestration_pb2,
    state_pb2,
    task_run_pb2,
    task_run_service_pb2,
    task_run_service_pb2_grpc,
    watch_pb2,
)

ResponseT = TypeVar("ResponseT", bound=Message)
SHUTTING_DOWN = "SERVER_SHUTTING_DOWN"  # the reason of a call refused before any work


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return out


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    name: str
    flow_id: str
    tags: tuple[str, ...]
    work_pool_name: str
    work_queue_name: str
    concurrency_limit: int | None

    @classmethod
    def from_proto(cls, message: deployment_pb2.Deployment) -> Deployment:
        return cls(
            deployment_id=message.id,
            name=message.name,
            flow_id=message.flow_id,
            tags=tuple(message.tags),
            work_pool_name=message.work_pool_name,
            work_queue_name=message.work_queue_name,
            concurrency_limit=message.concurrency_limit
            if message.HasField("concurrency_limit")
            else None,
        )


@dataclass(frozen=True)
class ConcurrencyLimit:
    tag: str
    limit: int
    active_task_run_ids: tuple[str, ...]

    @classmethod
    def from_proto(cls, message: Any) -> ConcurrencyLimit:
        return cls(message.tag, message.concurrency_limit, tuple(message.active_slots))


@dataclass(frozen=True)
class HistoryInterval:
    start: datetime
    end: datetime
    counts: dict[tuple[StateType, str], int]

    @classmethod
    def from_proto(cls, message: Any) -> HistoryInterval:
        return cls(
            start=message.interval_start.ToDatetime(tzinfo=UTC),
            end=message.interval_end.ToDatetime(tzinfo=UTC),
            counts={
                (StateType.from_proto(s.state_type), s.state_name): s.count_runs
                for s in message.states
            },
        )


@dataclass(frozen=True)
class GraphNode:
    """One task run in a flow run's dependency graph."""

    task_run_id: str
    name: str
    upstream: tuple[str, ...]
    state: State | None

    @classmethod
    def from_proto(cls, message: Any) -> GraphNode:
        return cls(
            task_run_id=message.id,
            name=message.name,
            upstream=tuple(message.upstream_dependencies),
            state=State.from_proto(message.state) if message.HasField("state") else None,
        )


@dataclass(frozen=True)
class OrchestrationResult:
    """What the server decided about a proposed state."""

    status: str  # ACCEPT, REJECT, ABORT or WAIT
    state: State | None
    written: bool
    reason: str
    delay: timedelta | None

    @classmethod
    def from_proto(cls, message: orchestration_pb2.OrchestrationResult) -> OrchestrationResult:
        return cls(
            status=orchestration_pb2.SetStateStatus.Name(message.status).removeprefix(
                "SET_STATE_STATUS_"
            ),
            state=State.from_proto(message.state) if message.HasField("state") else None,
            written=message.state_written,
            reason=message.details.reason,
            delay=message.details.delay.ToTimedelta()
            if message.details.HasField("delay")
            else None,
        )


def proposed_state(
    state_type: StateType | str,
    *,
    name: str = "",
    message: str = "",
    result: Result | None = None,
    **details: Any,
) -> state_pb2.State:
    """A state to propose; `details` are StateDetails fields (scheduled_time, cache_key, ...)."""
    proposal = state_pb2.State(type=StateType(state_type).to_proto(), name=name, message=message)
    for key, value in details.items():
        if isinstance(value, datetime):
            getattr(proposal.state_details, key).CopyFrom(_timestamp(value))
        else:
            setattr(proposal.state_details, key, value)
    if result is not None:
        proposal.result.serializer = result.serializer
        if result.inline_value is not None:
            proposal.result.inline_value = result.inline_value
        elif result.location_uri is not None:
            proposal.result.location_uri = result.location_uri
    return proposal


class Client:
    """A connection to a Runwire server.

    `address`, `token` and the TLS files default to the RUNWIRE_API_* variables (see
    runwire.connection), then to 127.0.0.1:50051 in plain text. Every call has a deadline
    (`timeout` seconds unless the call says otherwise); calls that are safe to repeat are
    retried with backoff while the server is UNAVAILABLE. TLS settings that do not fit the
    server's raise `TlsMismatch` (at once while the client has not connected yet). Use it as a
    context manager, or call `close()`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        token: str | None = None,
        tls: bool | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        self.connection = ConnectionSettings.resolve(
            address=address,
            token=token,
            tls=tls,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            root_certificates=root_certificates,
        )
        self.address = self.connection.address
        self.timeout = timeout
        self.retries = retries
        self._channel = self.connection.channel(
            [("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000)]
        )
        self._metadata = self.connection.metadata
        # Until the channel has connected once, a failure to connect is diagnosed before a call
        # waits for the connection (see _diagnose); afterwards calls go straight out.
        self._first = _diagnose.FirstConnection(self._channel, self.connection)
        self._away_until = 0.0  # monotonic time the server asked calls to wait for
        self.flows = flow_service_pb2_grpc.FlowServiceStub(self._channel)
        self.flow_runs = flow_run_service_pb2_grpc.FlowRunServiceStub(self._channel)
        self.task_runs = task_run_service_pb2_grpc.TaskRunServiceStub(self._channel)
        self.logs = log_service_pb2_grpc.LogServiceStub(self._channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(self._channel)
        self.limits = concurrency_limit_service_pb2_grpc.ConcurrencyLimitServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def wait_until_ready(self, timeout: float = 5.0) -> None:
        """Connect now; raise Unavailable if the server cannot be reached within `timeout`,
        and TlsMismatch as soon as TLS settings are why it cannot."""
        if self._first.connected:
            try:
                grpc.channel_ready_future(self._channel).result(timeout=timeout)
            except grpc.FutureTimeoutError:
                raise Unavailable(f"no connection to {self.address} within {timeout:g}s") from None
        elif not self._first.wait(time.monotonic() + timeout, until_ready=True):
            raise Unavailable(f"no connection to {self.address} within {timeout:g}s")

    def _first_connection(self, deadline: float) -> None:
        """Before the first connection: fail at once if TLS settings keep the client out, where
        a call would wait its whole deadline."""
        if not self._first.connected:
            self._first.wait(deadline, until_ready=False)

    def _explain(self, error: RunwireError) -> RunwireError:
        """A call that found no connection: the TLS mismatch behind it, if there is one (the
        server may have restarted with other TLS settings)."""
        if isinstance(error, Unavailable | DeadlineExceeded) and not _diagnose.is_connected(
            self._channel
        ):
            mismatch = _diagnose.diagnose(self.connection)
            if mismatch is not None:
                mismatch.__cause__ = error
                return mismatch
        return error

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the one place calls are made ----------------------------------------------------

    def call(
        self,
        method: Callable[..., ResponseT],
        request: Message,
        *,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> ResponseT:
        """Call one unary RPC with a deadline, retrying UNAVAILABLE when it is safe to.

        While the server has asked callers to stay away (a RetryInfo on UNAVAILABLE, which a
        server that is shutting down sends), calls wait that long first, within their
        deadline: a server that sees its port go quiet can stop without cutting off calls
        that reach it at the last moment."""
        attempt = 0
        while True:
            seconds = timeout or self.timeout
            deadline = time.monotonic() + seconds
            away = self._away_until - time.monotonic()
            if away >= seconds:
                raise Unavailable(
                    f"the server at {self.address} is shutting down and asked callers to wait "
                    f"{away:.1f}s, longer than this call's deadline",
                    reason=SHUTTING_DOWN,
                )
            if away > 0:
                time.sleep(away)
            if not self._first.connected:
                self._first.wait(deadline, until_ready=False)
            seconds = max(deadline - time.monotonic(), 0.001)
            try:
                # wait_for_ready: a call made while the channel reconnects waits (within its
                # deadline) instead of failing at once; nothing is sent until it is connected.
                return method(
                    request, timeout=seconds, metadata=self._metadata, wait_for_ready=True
                )
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
            if error.retry_delay:
                self._away_until = time.monotonic() + error.retry_delay
            # A server that is shutting down refuses a call before doing anything: any call
            # may be sent again then, even one that is not safe to repeat.
            safe = idempotent or error.reason == SHUTTING_DOWN
            if not (isinstance(error, Unavailable) and safe and attempt < self.retries):
                raise self._explain(error)
            # Full jitter: spread reconnecting clients out (the server's RetryInfo is waited
            # for at the top of the loop).
            time.sleep(random.uniform(0, min(8.0, 0.2 * 2**attempt)))
            attempt += 1

    def pages(self, method: Callable[..., Any], request: Message, items: str) -> Iterator[Any]:
        """Every item of a paged list, fetching the next page only when it is needed."""
        while True:
            page = self.call(method, request)
            yield from getattr(page, items)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token  # type: ignore[attr-defined]

    # --- flows ------------------------------------------------------------------------------

    def create_flow(
        self, name: str, *, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None
    ) -> FlowView:
        response = self.call(
            self.flows.CreateFlow,
            flow_service_pb2.CreateFlowRequest(
                flow=flow_pb2.Flow(name=name, tags=list(tags), labels=dict(labels or {}))
            ),
        )
        return FlowView.from_proto(response.flow)

    def get_flow(self, flow_id: str) -> FlowView:
        response = self.call(self.flows.GetFlow, flow_service_pb2.GetFlowRequest(flow_id=flow_id))
        return FlowView.from_proto(response.flow)

    def get_flow_by_name(self, name: str) -> FlowView:
        response = self.call(
            self.flows.GetFlowByName, flow_service_pb2.GetFlowByNameRequest(name=name)
        )
        return FlowView.from_proto(response.flow)

    def list_flows(self, *, page_size: int = 200) -> Iterator[FlowView]:
        request = flow_service_pb2.ListFlowsRequest(page_size=page_size)
        for flow in self.pages(self.flows.ListFlows, request, "flows"):
            yield FlowView.from_proto(flow)

    def delete_flow(self, flow_id: str) -> None:
        self.call(self.flows.DeleteFlow, flow_service_pb2.DeleteFlowRequest(flow_id=flow_id))

    # --- deployments and concurrency limits -------------------------------------------------

    def create_deployment(
        self,
        flow_id: str,
        name: str,
        *,
        tags: Sequence[str] = (),
        work_pool_name: str = "",
        work_queue_name: str = "",
        concurrency_limit: int | None = None,
        cancel_new_when_full: bool = False,
    ) -> Deployment:
        deployment = deployment_pb2.Deployment(
            flow_id=flow_id,
            name=name,
            tags=list(tags),
            work_pool_name=work_pool_name,
            work_queue_name=work_queue_name,
            concurrency_limit=concurrency_limit,
            collision_strategy=deployment_pb2.COLLISION_STRATEGY_CANCEL_NEW
            if cancel_new_when_full
            else deployment_pb2.COLLISION_STRATEGY_ENQUEUE,
        )
        response = self.call(
            self.deployments.CreateDeployment,
            deployment_service_pb2.CreateDeploymentRequest(deployment=deployment),
        )
        return Deployment.from_proto(response.deployment)

    def get_deployment(self, deployment_id: str) -> Deployment:
        response = self.call(
            self.deployments.GetDeployment,
            deployment_service_pb2.GetDeploymentRequest(deployment_id=deployment_id),
        )
        return Deployment.from_proto(response.deployment)

    def list_deployments(self, *, page_size: int = 200) -> Iterator[Deployment]:
        request = deployment_service_pb2.ListDeploymentsRequest(page_size=page_size)
        for item in self.pages(self.deployments.ListDeployments, request, "deployments"):
            yield Deployment.from_proto(item)

    def delete_deployment(self, deployment_id: str) -> None:
        self.call(
            self.deployments.DeleteDeployment,
            deployment_service_pb2.DeleteDeploymentRequest(deployment_id=deployment_id),
        )

    def set_concurrency_limit(self, tag: str, limit: int) -> ConcurrencyLimit:
        response = self.call(
            self.limits.CreateConcurrencyLimit,
            concurrency_limit_service_pb2.CreateConcurrencyLimitRequest(
                tag=tag, concurrency_limit=limit
            ),
        )
        return ConcurrencyLimit.from_proto(response.concurrency_limit)

    def get_concurrency_limit(self, tag: str) -> ConcurrencyLimit:
        response = self.call(
            self.limits.GetConcurrencyLimit,
            concurrency_limit_service_pb2.GetConcurrencyLimitRequest(tag=tag),
        )
        return ConcurrencyLimit.from_proto(response.concurrency_limit)

    def list_concurrency_limits(self) -> Iterator[ConcurrencyLimit]:
        request = concurrency_limit_service_pb2.ListConcurrencyLimitsRequest(page_size=200)
        for item in self.pages(self.limits.ListConcurrencyLimits, request, "concurrency_limits"):
            yield ConcurrencyLimit.from_proto(item)

    def delete_concurrency_limit(self, tag: str) -> None:
        self.call(
            self.limits.DeleteConcurrencyLimit,
            concurrency_limit_service_pb2.DeleteConcurrencyLimitRequest(tag=tag),
        )

    # --- flow runs --------------------------------------------------------------------------

    def create_flow_run(
        self,
        flow_id: str,
        *,
        name: str = "",
        parameters: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        deployment_id: str = "",
        state: state_pb2.State | None = None,
    ) -> FlowRunView:
        params = struct_pb2.Struct()
        params.update(dict(parameters or {}))
        run = flow_run_pb2.FlowRun(
            flow_id=flow_id,
            name=name,
            parameters=params,
            tags=list(tags),
            labels=dict(labels or {}),
            idempotency_key=idempotency_key,
            deployment_id=deployment_id,
            state=state,
        )
        response = self.call(
            self.flow_runs.CreateFlowRun,
            flow_run_service_pb2.CreateFlowRunRequest(flow_run=run),
            # Without an idempotency key a retried create could make two runs.
            idempotent=bool(idempotency_key),
        )
        return FlowRunView.from_proto(self, response.flow_run)

    def get_flow_run(self, flow_run_id: str) -> FlowRunView:
        return FlowRunView.from_flow_run_id(flow_run_id, client=self)

    def list_flow_runs(
        self,
        criteria: filters_pb2.FlowRunCriteria | None = None,
        *,
        sort: filters_pb2.FlowRunSort.ValueType = filters_pb2.FLOW_RUN_SORT_ID_DESC,
        page_size: int = 200,
        limit: int | None = None,
    ) -> Iterator[FlowRunView]:
        request = flow_run_service_pb2.ListFlowRunsRequest(
            filter=criteria, sort=sort, page_size=page_size
        )
        for seen, run in enumerate(self.pages(self.flow_runs.ListFlowRuns, request, "flow_runs")):
            if limit is not None and seen >= limit:
                return
            yield FlowRunView.from_proto(self, run)

    def set_flow_run_state(
        self, flow_run_id: str, state: state_pb2.State, *, force: bool = False
    ) -> OrchestrationResult:
        response = self.call(
            self.flow_runs.SetFlowRunState,
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=flow_run_id, state=state, force=force
            ),
            # Safe to repeat only with a transition id: the server refuses the duplicate.
            idempotent=bool(state.state_details.transition_id),
        )
        return OrchestrationResult.from_proto(response.result)

    def resume_flow_run(self, flow_run_id: str) -> OrchestrationResult:
        response = self.call(
            self.flow_runs.ResumeFlowRun,
            flow_run_service_pb2.ResumeFlowRunRequest(flow_run_id=flow_run_id),
            idempotent=False,
        )
        return OrchestrationResult.from_proto(response.result)

    def cancel_flow_run(self, flow_run_id: str) -> OrchestrationResult:
        return self.set_flow_run_state(flow_run_id, proposed_state(StateType.CANCELLING))

    def delete_flow_run(self, flow_run_id: str) -> None:
        self.call(
            self.flow_runs.DeleteFlowRun,
            flow_run_service_pb2.DeleteFlowRunRequest(flow_run_id=flow_run_id),
        )

    def list_flow_run_states(self, flow_run_id: str) -> list[State]:
        request = flow_run_service_pb2.ListFlowRunStatesRequest(
            flow_run_id=flow_run_id, page_size=200
        )
        return [
            State.from_proto(s)
            for s in self.pages(self.flow_runs.ListFlowRunStates, request, "states")
        ]

    def update_flow_run(self, flow_run_id: str, **changes: Any) -> FlowRunView:
        """Change fields of a run: name, flow_version, parameters, tags, labels, ..."""
        run = flow_run_pb2.FlowRun(id=flow_run_id)
        for name, value in changes.items():
            if name in ("parameters", "context", "run_config"):
                getattr(run, name).update(dict(value))
            elif name in ("tags",):
                run.tags.extend(value)
            elif name == "labels":
                run.labels.update(dict(value))
            else:
                setattr(run, name, value)
        response = self.call(
            self.flow_runs.UpdateFlowRun,
            flow_run_service_pb2.UpdateFlowRunRequest(
                flow_run=run, update_mask=field_mask_pb2.FieldMask(paths=list(changes))
            ),
        )
        return FlowRunView.from_proto(self, response.flow_run)

    def get_flow_run_history(
        self,
        start: datetime,
        end: datetime,
        interval: timedelta,
        criteria: filters_pb2.FlowRunCriteria | None = None,
    ) -> list[HistoryInterval]:
        """Runs expected to start in each interval, counted by state."""
        request = flow_run_service_pb2.GetFlowRunHistoryRequest(
            history_start=_timestamp(start), history_end=_timestamp(end), filter=criteria
        )
        request.history_interval.FromTimedelta(interval)
        response = self.call(self.flow_runs.GetFlowRunHistory, request)
        return [HistoryInterval.from_proto(i) for i in response.intervals]

    def watch_flow_runs(
        self,
        criteria: filters_pb2.FlowRunCriteria | None = None,
        *,
        after_cursor: int | None = None,
        reconnect_for: timedelta = timedelta(minutes=5),
    ) -> Iterator[tuple[int, str, State]]:
        """`(cursor, flow_run_id, state)` for every state change of a matching run, from now
        (or after `after_cursor`, such as a list's watch cursor) on, until the caller stops.
        A dropped connection or a restarted server is resumed after the last change seen.

        Raises OutOfRange (reason CURSOR_EXPIRED) when the cursor is older than the server
        keeps events for: changes were missed, so list the runs again and watch from the
        list's watch_cursor."""

        def open_stream(cursor: int | None) -> Any:
            request = watch_pb2.WatchFlowRunsRequest(filter=criteria)
            if cursor is not None:
                request.after_cursor = cursor
            return self.flow_runs.WatchFlowRuns(
                request, metadata=self._metadata, wait_for_ready=True
            )

        for message in self._resumed(open_stream, after_cursor, reconnect_for, restart=False):
            if message.WhichOneof("event") == "flow_run_state":
                change = message.flow_run_state
                yield message.cursor, change.flow_run_id, State.from_proto(change.state)

    def count_flow_runs(self, criteria: filters_pb2.FlowRunCriteria | None = None) -> int:
        response = self.call(
            self.flow_runs.CountFlowRuns,
            flow_run_service_pb2.CountFlowRunsRequest(filter=criteria),
        )
        return response.count

    def get_flow_run_graph(self, flow_run_id: str) -> list[GraphNode]:
        response = self.call(
            self.flow_runs.GetFlowRunGraph,
            flow_run_service_pb2.GetFlowRunGraphRequest(flow_run_id=flow_run_id),
        )
        return [GraphNode.from_proto(node) for node in response.nodes]

    # --- task runs and logs -----------------------------------------------------------------

    def create_task_run(
        self,
        flow_run_id: str,
        task_key: str,
        *,
        dynamic_key: str = "",
        map_index: int = -1,
        tags: Sequence[str] = (),
        retries: int = 0,
        upstream: Mapping[str, Sequence[str]] | None = None,
        state: state_pb2.State | None = None,
    ) -> TaskRunView:
        """Create (or, for the same flow run, key and dynamic key, get) a task run.

        `upstream` maps each argument name to the ids of the task runs its value came from.
        """
        inputs = {
            name: task_run_pb2.TaskInputList(
                inputs=[
                    task_run_pb2.TaskInput(
                        input_type=task_run_pb2.TaskInput.INPUT_TYPE_TASK_RUN, task_run_id=source
                    )
                    for source in sources
                ]
            )
            for name, sources in (upstream or {}).items()
        }
        response = self.call(
            self.task_runs.CreateTaskRun,
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(
                    flow_run_id=flow_run_id,
                    task_key=task_key,
                    dynamic_key=dynamic_key,
                    map_index=map_index,
                    tags=list(tags),
                    empirical_policy=task_run_pb2.TaskRunPolicy(retries=retries),
                    task_inputs=inputs,
                    state=state,
                )
            ),
        )
        return TaskRunView.from_proto(self, response.task_run)

    def get_task_run(self, task_run_id: str) -> TaskRunView:
        return TaskRunView.from_task_run_id(task_run_id, client=self)

    def set_task_run_state(
        self, task_run_id: str, state: state_pb2.State, *, force: bool = False
    ) -> OrchestrationResult:
        response = self.call(
            self.task_runs.SetTaskRunState,
            task_run_service_pb2.SetTaskRunStateRequest(
                task_run_id=task_run_id, state=state, force=force
            ),
            idempotent=False,
        )
        return OrchestrationResult.from_proto(response.result)

    def task_run_messages(
        self, flow_run_id: str, **task_run_filter: Any
    ) -> list[task_run_pb2.TaskRun]:
        """A flow run's task runs as raw messages, oldest first (the views build on this)."""
        criteria = task_run_service_pb2.TaskRunCriteria(
            task_runs=filters_pb2.TaskRunFilter(
                flow_run_id=filters_pb2.StringFilter(
                    any_of=filters_pb2.StringList(values=[flow_run_id])
                ),
                **task_run_filter,
            )
        )
        request = task_run_service_pb2.ListTaskRunsRequest(
            filter=criteria, sort=filters_pb2.TASK_RUN_SORT_ID_ASC, page_size=200
        )
        return list(self.pages(self.task_runs.ListTaskRuns, request, "task_runs"))

    def list_logs(
        self,
        flow_run_id: str,
        *,
        after: datetime | None = None,
        before: datetime | None = None,
        level_at_least: int | None = None,
    ) -> Iterator[FlowRunLog]:
        """A run's logs, oldest first; `after` and `before` are inclusive bounds."""
        flt = filters_pb2.LogFilter(
            flow_run_id=filters_pb2.StringFilter(
                any_of=filters_pb2.StringList(values=[flow_run_id])
            )
        )
        if after is not None:
            flt.timestamp.after.CopyFrom(_timestamp(after))
        if before is not None:
            flt.timestamp.before.CopyFrom(_timestamp(before))
        if level_at_least is not None:
            flt.level.ge = level_at_least
        request = log_service_pb2.ListLogsRequest(filter=flt, page_size=200)
        for entry in self.pages(self.logs.ListLogs, request, "logs"):
            yield FlowRunLog.from_proto(entry)

    def write_logs(
        self, flow_run_id: str, *entries: tuple[int, str], task_run_id: str = ""
    ) -> None:
        """Store `(level, message)` entries for a run, stamped now."""
        now = _timestamp(datetime.now(UTC))
        self.call(
            self.logs.CreateLogs,
            log_service_pb2.CreateLogsRequest(
                logs=[
                    log_pb2.Log(
                        flow_run_id=flow_run_id,
                        task_run_id=task_run_id,
                        level=level,
                        message=message,
                        timestamp=now,
                    )
                    for level, message in entries
                ]
            ),
            idempotent=False,
        )

    # --- watching ---------------------------------------------------------------------------

    def watch(
        self,
        flow_run_id: str,
        *,
        stream_states: bool = True,
        stream_logs: bool = True,
        include_task_runs: bool = False,
        after_cursor: int | None = None,
        reconnect_for: timedelta = timedelta(minutes=5),
    ) -> Iterator[watch_pb2.WatchFlowRunResponse]:
        """The run's events as the server streams them, reconnecting with the last cursor when
        the connection drops or the server restarts, until the run finishes (or is deleted).
        A cursor older than the server keeps events for (retention) starts the watch over from
        the run's current state.

        Markers (caught_up, heartbeats) are passed through; the final StreamEnd is not.
        """

        def open_stream(cursor: int | None) -> Any:
            request = watch_pb2.WatchFlowRunRequest(
                flow_run_id=flow_run_id,
                stream_states=stream_states,
                stream_logs=stream_logs,
                include_task_runs=include_task_runs,
            )
            if cursor is not None:
                request.after_cursor = cursor
            return self.flow_runs.WatchFlowRun(
                request, metadata=self._metadata, wait_for_ready=True
            )

        yield from self._resumed(open_stream, after_cursor, reconnect_for, restart=True)

    def _resumed(
        self,
        open_stream: Callable[[int | None], Any],
        cursor: int | None,
        reconnect_for: timedelta,
        *,
        restart: bool,
    ) -> Iterator[Any]:
        """A watch stream's messages, opened again after the last cursor seen when the
        connection drops or the server stops, until the stream ends for good. `restart`: a
        cursor that expired (retention) starts the watch over from now, as for one run, whose
        watch begins with its current state; otherwise the expiry is raised."""
        down_since: float | None = None
        attempt = 0
        while True:
            self._first_connection(time.monotonic() + self.timeout)
            stream = open_stream(cursor)
            try:
                for message in stream:
                    down_since, attempt = None, 0
                    if message.WhichOneof("event") == "end":
                        if message.end.reason == watch_pb2.StreamEnd.REASON_SERVER_SHUTDOWN:
                            break  # the call then ends UNAVAILABLE: reconnect below
                        return
                    cursor = message.cursor
                    yield message
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if error.retry_delay:
                    self._away_until = time.monotonic() + error.retry_delay
                expired = isinstance(error, OutOfRange) and error.reason == "CURSOR_EXPIRED"
                if expired and restart:
                    cursor = None
                    continue
                if not isinstance(error, Unavailable):
                    raise error from None
            finally:
                # The caller may stop early: end the call now rather than when collected.
                stream.cancel()
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > reconnect_for.total_seconds():
                raise Unavailable(f"could not reconnect to {self.address} to keep watching")
            away = self._away_until - time.monotonic()
            time.sleep(max(away, random.uniform(0, min(5.0, 0.2 * 2**attempt))))
            attempt += 1


# Views import the client type only for annotations; imported last to avoid a cycle.
from runwire.views import FlowRunLog, FlowRunView, FlowView, TaskRunView  # noqa: E402

__all__ = ["Client", "GraphNode", "OrchestrationResult", "RunwireError", "proposed_state"]
