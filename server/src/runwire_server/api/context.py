"""What every servicer needs: the database, the settings and the page-token signer."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from google.protobuf.message import Message

from runwire.v1 import orchestration_pb2, state_pb2
from runwire_server.api.limits import StreamQuota
from runwire_server.broadcast import Broadcaster
from runwire_server.convert import outcome_to_proto, parse_proposed_state, stamp
from runwire_server.metrics import Metrics
from runwire_server.orchestration.context import Settings as OrchestrationSettings
from runwire_server.services.states import Outcome, Proposal
from runwire_server.settings import Settings
from runwire_server.storage.database import Database
from runwire_server.storage.paging import PageRequest, PageTokens, page_request


@dataclass
class AppContext:
    db: Database
    settings: Settings
    tokens: PageTokens
    broadcaster: Broadcaster
    metrics: Metrics
    watch_quota: StreamQuota

    def orchestrated(
        self, run_kind: str, outcome: Outcome
    ) -> orchestration_pb2.OrchestrationResult:
        """The result for the client, counted in the transition metrics."""
        self.metrics.transitions.labels(run_kind, outcome.status.name).inc()
        return outcome_to_proto(outcome)

    def proposal(self, message: state_pb2.State, field: str) -> Proposal:
        """Validate a proposed state now; stamp it with the time of the write later."""
        state = parse_proposed_state(
            message, field, max_inline_result=self.settings.max_inline_result_bytes
        )
        return lambda at: stamp(state, at)

    @functools.cached_property
    def orchestration(self) -> OrchestrationSettings:
        s = self.settings
        return OrchestrationSettings(
            deployment_slot_wait_seconds=s.deployment_slot_wait_seconds,
            tag_slot_wait_seconds=s.tag_slot_wait_seconds,
            max_cache_key_length=s.max_cache_key_length,
        )

    def page(self, request: Message, *, offset: int = 0) -> PageRequest:
        return page_request(
            request,
            page_size=getattr(request, "page_size", 0),
            offset=offset,
            default_size=self.settings.default_page_size,
            max_size=self.settings.max_page_size,
        )
