"""The services: one per resource, each owning its units of work; the edges call them."""

from __future__ import annotations

from dataclasses import dataclass

from runwire_server.events.broadcast import Broadcaster
from runwire_server.events.values import Codec
from runwire_server.events.watch import WatchService
from runwire_server.orchestration.context import Settings as OrchestrationSettings
from runwire_server.pages import PageTokens
from runwire_server.services.concurrency_limits import ConcurrencyLimitService
from runwire_server.services.deployments import DeploymentService
from runwire_server.services.flow_runs import FlowRunService
from runwire_server.services.flows import FlowService
from runwire_server.services.history import HistoryService
from runwire_server.services.leases import LeaseService
from runwire_server.services.logs import LogService
from runwire_server.services.task_reports import TaskReportService
from runwire_server.services.task_runs import TaskRunService
from runwire_server.storage.database import Database


@dataclass(frozen=True)
class Services:
    flows: FlowService
    deployments: DeploymentService
    flow_runs: FlowRunService
    task_runs: TaskRunService
    task_reports: TaskReportService
    logs: LogService
    concurrency_limits: ConcurrencyLimitService
    history: HistoryService
    watch: WatchService
    leases: LeaseService

    @classmethod
    def over(
        cls,
        db: Database,
        tokens: PageTokens,
        broadcaster: Broadcaster,
        codec: Codec,
        orchestration: OrchestrationSettings,
    ) -> Services:
        return cls(
            flows=FlowService(db, tokens),
            deployments=DeploymentService(db, tokens),
            flow_runs=FlowRunService(db, tokens, orchestration),
            task_runs=TaskRunService(db, tokens, orchestration),
            task_reports=TaskReportService(db, tokens, orchestration),
            logs=LogService(db, tokens),
            concurrency_limits=ConcurrencyLimitService(db, tokens),
            history=HistoryService(db),
            watch=WatchService(db, broadcaster, codec),
            leases=LeaseService(db, orchestration),
        )
