"""What every servicer needs: the services, the settings and the metrics; and the edge's own
checks of what a request carries (object sizes, proposed states) and of what a response may
hold (pages that end early, answers too large to send)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from runwire.v1 import orchestration_pb2, state_pb2
from runwire_server import wire_scalars
from runwire_server.convert import outcome_to_proto, parse_proposed_state, stamp
from runwire_server.errors import FailedPrecondition, InvalidArgument, quote
from runwire_server.metrics import Metrics
from runwire_server.pages import Page, PageRequest, page_request
from runwire_server.services import Services
from runwire_server.services.states import Outcome, Proposal
from runwire_server.settings import Settings

RowT = TypeVar("RowT")
ItemT = TypeVar("ItemT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
_ITEM_OVERHEAD = 6  # an item's field tag and length in the response
# What the server maintains on an object, which RUNWIRE_MAX_OBJECT_BYTES does not count.
_SERVER_FIELDS = frozenset(
    {
        "id",
        "state",
        "created",
        "updated",
        "run_count",
        "flow_run_run_count",
        "expected_start_time",
        "next_scheduled_start_time",
        "start_time",
        "end_time",
        "total_run_time",
        "estimated_run_time",
        "estimated_start_time_delta",
        "lease_expire_time",
    }
)


def _without(message: Message, names: list[str]) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    for name in names:
        copy.ClearField(name)
    return copy


@dataclass
class AppContext:
    services: Services
    settings: Settings
    metrics: Metrics

    def orchestrated(
        self, run_kind: str, outcome: Outcome
    ) -> orchestration_pb2.OrchestrationResult:
        """The result for the client, counted in the transition metrics."""
        self.count_transitions(run_kind, Counter([outcome.status.name]))
        return outcome_to_proto(outcome)

    def count_transitions(self, run_kind: str, decisions: Counter[str]) -> None:
        """Count decisions (by status) in the transition metrics, once a status."""
        for status, count in decisions.items():
            self.metrics.transitions.labels(run_kind, status).inc(count)

    def check_object(self, message: Message, field: str) -> None:
        """Refuse an object (a flow, deployment or run) larger than the server keeps. Only the
        fields a client sets count, so an object is measured alike when it is created and
        after an update; its state is checked as a proposal."""
        size = message.ByteSize()
        if size <= self.settings.max_object_bytes:
            return  # the client's fields are fewer still
        present = [f.name for f, _ in message.ListFields() if f.name in _SERVER_FIELDS]
        if present:
            size = _without(message, present).ByteSize()
        self._check_size(size, field)

    def _check_size(self, size: int, field: str) -> None:
        limit = self.settings.max_object_bytes
        if size > limit:
            raise InvalidArgument(
                field, f"is {size} bytes; at most {limit} are kept (RUNWIRE_MAX_OBJECT_BYTES)"
            )

    def proposal(self, message: state_pb2.State, field: str) -> Proposal:
        """Validate a proposed state now; stamp it with the time of the write later."""
        # The inline result has its own limit (RUNWIRE_MAX_INLINE_RESULT_BYTES).
        self._check_size(message.ByteSize() - len(message.result.inline_value), field)
        state = parse_proposed_state(
            message, field, max_inline_result=self.settings.max_inline_result_bytes
        )
        return lambda at: stamp(state, at)

    def lease(
        self, request: Message, field: str = "lease_duration", path: str = ""
    ) -> float | None:
        """The lease length a request (at `path` in the call's request) names, in seconds;
        None when it names none."""
        if not request.HasField(field):
            return None
        where = f"{path}.{field}" if path else field
        seconds = wire_scalars.to_timedelta(getattr(request, field), where).total_seconds()
        most = self.settings.max_lease_seconds
        if not 1 <= seconds <= most:
            raise InvalidArgument(
                where,
                f"must be from 1 s to {most:g} s (RUNWIRE_MAX_LEASE_SECONDS), not {seconds:g} s",
            )
        return seconds

    def paged(
        self,
        found: Page[RowT],
        convert: Callable[[RowT], ItemT],
        build: Callable[[list[ItemT], str], ResponseT],
    ) -> ResponseT:
        """The response for one page, ended early (with the token that continues after its
        last item) where the whole page would pass the largest message the server sends:
        a page of large objects must not fail the list for everyone."""
        items = [convert(row) for row in found.rows]
        response = build(items, found.next_token)
        budget = self.settings.response_budget
        if response.ByteSize() <= budget:
            return response
        used = keep = 0
        for item in items:
            used += item.ByteSize() + _ITEM_OVERHEAD
            if used > budget and keep:
                break
            keep += 1
        return build(items[:keep], found.token_after(keep))

    def whole(self, response: ResponseT, what: str, instead: str) -> ResponseT:
        """`response`, or FAILED_PRECONDITION when it is larger than the server sends: an
        answer that cannot be paged must not reach the client as a transport error."""
        size = response.ByteSize()
        if size > self.settings.response_budget:
            raise FailedPrecondition(
                "RESPONSE_TOO_LARGE",
                f"{what} takes {size} bytes, more than one response may carry "
                f"({self.settings.response_budget}); {instead}",
                metadata={"bytes": str(size)},
            )
        return response

    def page(self, request: Message, *, offset: int = 0) -> PageRequest:
        return page_request(
            page_size=getattr(request, "page_size", 0),
            offset=offset,
            token=getattr(request, "page_token", ""),
            fingerprint=lambda: fingerprint(request),
            default_size=self.settings.default_page_size,
            max_size=self.settings.max_page_size,
        )


def update_paths(
    mask: field_mask_pb2.FieldMask, message: Message, updatable: frozenset[str], what: str
) -> list[str]:
    """The fields an update changes: the mask's paths, each one `updatable`; without a mask
    (AIP-134), every updatable field the message (the request's field `what`) sets."""
    paths = list(mask.paths)
    if not paths:
        paths = [f.name for f, _ in message.ListFields() if f.name in updatable]
        if not paths:
            raise InvalidArgument("update_mask", f"names no field and {what} sets none to change")
    for path in paths:
        if path not in updatable:
            raise InvalidArgument(
                "update_mask", f"{quote(path)} cannot be updated; allowed: {sorted(updatable)}"
            )
    return paths


def fingerprint(request: Message) -> str:
    """A digest of every request field that must stay the same from page to page."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("page_token", "page_size"):
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:32]
