"""Building, starting and gracefully stopping the server: its gRPC edge and its HTTP edge
(Connect and gRPC-Web), one process and one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from filelock import FileLock
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from runwire.v1 import (
    concurrency_limit_service_pb2,
    concurrency_limit_service_pb2_grpc,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_service_pb2,
    log_service_pb2_grpc,
    server_service_pb2,
    server_service_pb2_grpc,
    task_run_service_pb2,
    task_run_service_pb2_grpc,
)
from runwire_server import convert
from runwire_server.api.context import AppContext
from runwire_server.api.flow_runs import FlowRunServicer
from runwire_server.api.flows import DeploymentServicer, FlowServicer
from runwire_server.api.interceptors import ApiInterceptor
from runwire_server.api.limits import open_stream_quota, watch_quota
from runwire_server.api.policy import CallPolicy, TracedCallPolicy
from runwire_server.api.request_decoder import RequestDecoder
from runwire_server.api.server_info import ServerServicer
from runwire_server.api.task_runs import ConcurrencyLimitServicer, LogServicer, TaskRunServicer
from runwire_server.app import App, open_database, orchestration_settings
from runwire_server.auth import Authenticator
from runwire_server.convert.events import EventCodec
from runwire_server.events.broadcast import Broadcaster
from runwire_server.events.committed import CommittedHere
from runwire_server.http.edge import http_application
from runwire_server.http.serving import HttpServer
from runwire_server.log_config import configure_logging
from runwire_server.metrics import Metrics
from runwire_server.services import Services
from runwire_server.services.lease_reaper import LeaseReaper
from runwire_server.services.retention import Retention
from runwire_server.settings import (
    ConfigurationError,
    Settings,
    database_url_for_display,
    setting,
)

# InsecureAddress and database_error are also what callers of the server catch and report.
from runwire_server.startup_checks import (
    InsecureAddress as InsecureAddress,
)
from runwire_server.startup_checks import (
    bind_problem,
    check_exposure,
    is_loopback,
    server_credentials,
)
from runwire_server.startup_checks import (
    database_error as database_error,
)
from runwire_server.storage import sqlite_lock
from runwire_server.storage.database import SchemaMismatch

if TYPE_CHECKING:  # imported when tracing is on, and only then (see call_tracer)
    from opentelemetry.sdk.trace import TracerProvider

    from runwire_server.tracing import ServerTracer

log = structlog.get_logger("runwire.server")

# Every service Runwire serves (descriptors, for reflection, health and the fuzz test).
SERVICES = tuple(
    module.DESCRIPTOR.services_by_name[name]
    for module, name in (
        (flow_service_pb2, "FlowService"),
        (deployment_service_pb2, "DeploymentService"),
        (flow_run_service_pb2, "FlowRunService"),
        (task_run_service_pb2, "TaskRunService"),
        (log_service_pb2, "LogService"),
        (concurrency_limit_service_pb2, "ConcurrencyLimitService"),
        (server_service_pb2, "ServerService"),
    )
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        # Clients keep long watch streams alive with pings (the runwire client every 60 s):
        # accept pings every 20 s instead of gRPC's default 5 minutes, which would cut such
        # clients off with GOAWAY "too_many_pings"; and ping idle clients so dead connections
        # are noticed.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", 120_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # gRPC cancels calls beyond 1,000 "pending requests" by default, and on the asyncio
        # server every open watch stream counts: without this, stream 1,025 and later fail.
        ("grpc.server.max_pending_requests", settings.max_concurrent_calls),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_concurrent_calls),
        # gRPC also cancels a call that waits more than 30 s for the asyncio server to pick it
        # up. A storm of watchers opening at once (10,000 catching up on two cores) queues
        # calls that long, and they failed with a bare CANCELLED. A call waits instead, bounded
        # by its own deadline and the pending-call limit above.
        ("grpc.server_max_unrequested_time_in_server", 3600),
        # Larger requests get RESOURCE_EXHAUSTED from gRPC before any of our code runs.
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Two servers must never share a port (see _bind_problem).
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    app: App
    health: health.aio.HealthServicer
    bridge: Any = None
    metrics_port: int | None = None
    authenticator: Authenticator | None = None
    policy: CallPolicy | None = None
    http: HttpServer | None = None
    http_port: int | None = None
    decoder: RequestDecoder | None = None
    tokens_watch: asyncio.Task[None] | None = None
    database_lock: FileLock | None = None  # SQLite: see storage.sqlite_lock
    retention: Retention | None = None
    pruning: asyncio.Task[None] | None = None
    reaping: asyncio.Task[None] | None = None
    tracer: ServerTracer | None = None

    def reload_tokens(self, if_changed: bool = False) -> None:
        """Read the tokens file again: on SIGHUP, or `if_changed` it was edited since it was
        last read. A bad file keeps the tokens in force."""
        if self.authenticator is None:
            return
        try:
            if if_changed:
                count = self.authenticator.reload_if_changed()
            else:
                count = self.authenticator.reload()
        except (OSError, ValueError) as exc:
            log.error("tokens.reload_failed", error=str(exc))
            return
        if count is None:
            return
        log.info("tokens.reloaded", tokens=count)
        if count == 0 and self.authenticator.enabled:
            log.warning(
                "tokens.none", detail="no token is configured: every call is refused until one is"
            )

    async def watch_tokens_file(self, every: float) -> None:
        """Pick up edits to the tokens file (`runwire token create` and `revoke`) without a
        SIGHUP. A task of its own, so that calls never stat() the file: while the file stays
        as it is this costs one stat() every `every` seconds."""
        while True:
            await asyncio.sleep(every)
            self.reload_tokens(if_changed=True)

    async def stop(self, grace: float | None = None) -> None:
        grace = self.app.settings.shutdown_grace_seconds if grace is None else grace
        # One grace period for the whole stop: the drain, then whatever each edge still has
        # in flight, so that a supervisor that waits that long never has to kill the server.
        ends = time.monotonic() + grace
        for task in (self.tokens_watch, self.pruning, self.reaping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.health.enter_graceful_shutdown()
        # Watch streams end first (with a marker that says reconnect), so that the grace
        # period is left to unary calls.
        self.app.broadcaster.close()
        if self.policy is not None:
            await self.policy.drain(max_seconds=min(grace, 5.0))
        if self.http is not None:
            await self.http.stop(max(0.0, ends - time.monotonic()))
        await self.server.stop(max(0.0, ends - time.monotonic()))
        if self.decoder is not None:
            self.decoder.close()
        if self.bridge is not None:
            await asyncio.to_thread(self.bridge.stop)
        self.app.metrics.close()
        self.app.db.close()
        if self.database_lock is not None:
            self.database_lock.release()
        if self.tracer is not None:  # the last calls' spans, sent before the server is gone
            await asyncio.to_thread(self.tracer.close)


def call_tracer(settings: Settings, provider: TracerProvider | None) -> ServerTracer | None:
    """What gives each call its span: none (and OpenTelemetry is never imported) unless
    tracing is on, or the caller brings a provider of its own (an in-memory exporter's, say)."""
    if settings.tracing == "off" and provider is None:
        return None
    try:
        from runwire_server import tracing
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigurationError(
            f"{setting('tracing')}={settings.tracing} needs OpenTelemetry, which is not "
            "installed: pip install 'runwire-server[otel]'"
        ) from None
    if provider is None:
        return tracing.ServerTracer(tracing.otlp_provider(), owned=True)
    return tracing.ServerTracer(provider, owned=False)


async def start(
    settings: Settings, *, tracer_provider: TracerProvider | None = None
) -> RunningServer:
    """Start a server. `tracer_provider`: trace every call with it, whatever
    RUNWIRE_TRACING says; the caller owns it (the server flushes it when it stops)."""
    try:
        authenticator = Authenticator.from_settings(settings.tokens, settings.tokens_file)
    except OSError as exc:
        raise ConfigurationError(
            f"{setting('tokens_file')}: cannot read {settings.tokens_file}: {exc.strerror}"
        ) from None
    except ValueError as exc:  # the message names the file and line, or RUNWIRE_TOKENS
        raise ConfigurationError(str(exc)) from None
    credentials = server_credentials(settings) if settings.tls else None
    check_exposure(settings, authenticator)
    listen = settings.listen_address
    # Before the database is opened (and perhaps migrated) for a server that cannot listen.
    problem = None if listen.startswith(("unix:", "unix-abstract:")) else bind_problem(listen)
    if problem is not None:
        raise ConfigurationError(
            f"cannot listen on {listen} ({setting('listen_address')}): {problem}"
        )
    problem = bind_problem(settings.http_address) if settings.http_address else None
    if problem is not None:
        raise ConfigurationError(
            f"cannot listen on {settings.http_address} ({setting('http_address')}): {problem}"
        )
    tracer = call_tracer(settings, tracer_provider)
    try:
        database_lock = sqlite_lock.hold(settings.database_url)
    except sqlite_lock.DatabaseInUse as exc:
        if tracer is not None:
            tracer.close()
        raise ConfigurationError(str(exc)) from None
    try:
        running = await _start(settings, authenticator, credentials, tracer)
    except BaseException:
        if database_lock is not None:
            database_lock.release()
        if tracer is not None:
            tracer.close()
        raise
    running.database_lock = database_lock
    running.tracer = tracer
    return running


async def _start(
    settings: Settings,
    authenticator: Authenticator,
    credentials: grpc.ServerCredentials | None,
    tracer: ServerTracer | None,
) -> RunningServer:
    broadcaster = Broadcaster(buffer=settings.watch_buffer_events)
    broadcaster.bind(asyncio.get_running_loop())
    codec = EventCodec()
    here = CommittedHere()  # used on PostgreSQL only (events.replicas)
    db, tokens = open_database(settings, broadcaster, codec, here)
    convert.keep_run_messages(settings.kept_run_messages)
    metrics = Metrics()
    decoder = RequestDecoder(settings.decode_workers, settings.max_filter_values)
    bridge = None
    http: HttpServer | None = None
    http_port = None
    try:  # from here on, a server that cannot start closes what it opened
        if db.is_postgresql:
            from runwire_server.events.replicas import EventBridge, wait_listening

            bridge = EventBridge(db, broadcaster.publish, here)
            bridge.start()
            try:
                await asyncio.to_thread(wait_listening, bridge)
            except TimeoutError:
                raise ConfigurationError(
                    f"cannot LISTEN for changes on the database at "
                    f"{database_url_for_display(settings.database_url)} "
                    f"({setting('database_url')}): replicas need a direct connection (not a "
                    "pooler in transaction mode)"
                ) from None
        db.observe_write_batches(metrics.write_batch)
        services = Services.over(db, tokens, broadcaster, codec, orchestration_settings(settings))
        app = App(
            db=db,
            settings=settings,
            tokens=tokens,
            broadcaster=broadcaster,
            metrics=metrics,
            services=services,
        )
        edge = AppContext(services=services, settings=settings, metrics=metrics)
        # Without tracing, the plain policy: its calls pay nothing for tracing.
        make_policy: Callable[..., CallPolicy] = (
            CallPolicy if tracer is None else functools.partial(TracedCallPolicy, tracer=tracer)
        )
        policy = make_policy(
            authenticator,
            metrics,
            streams=watch_quota(settings.max_watch_streams_per_client, metrics),
            open_streams=open_stream_quota(settings.max_open_streams_per_peer),
            decoder=decoder,
        )
        server = grpc.aio.server(
            interceptors=[ApiInterceptor(policy)], options=server_options(settings)
        )
        servicers = _servicers(edge)
        for service, servicer in servicers:
            _SERVICERS[service.name][1](servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        listen = settings.listen_address
        try:
            if credentials is None:
                port = server.add_insecure_port(listen)
            else:
                port = server.add_secure_port(listen, credentials)
        except RuntimeError:
            port = 0  # gRPC raises where it used to return 0
        if port == 0:  # taken since the check above, say; gRPC's own log line tells more
            raise ConfigurationError(
                f"cannot listen on {listen} ({setting('listen_address')}): gRPC could not bind it"
            )
        try:
            metrics_port = (
                metrics.serve(settings.metrics_address) if settings.metrics_address else None
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {settings.metrics_address} "
                f"({setting('metrics_address')}): {exc.strerror or exc}"
            ) from None
        if settings.http_address:
            http = HttpServer(
                http_application(
                    servicers,
                    policy,
                    max_message_bytes=settings.max_message_bytes,
                    grpc_address=f"{listen.rsplit(':', 1)[0]}:{port}",
                    cors_allowed_origins=settings.allowed_origins,
                    local_only=lambda: not authenticator.enabled and not settings.mutual_tls,
                ),
                settings,
            )
            try:
                http_port = await http.start()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot listen on {settings.http_address} ({setting('http_address')}): "
                    f"{exc.strerror or exc}"
                ) from None
        await server.start()
    except BaseException:
        if http is not None:
            with contextlib.suppress(Exception):  # the error that stopped the start says why
                await http.stop()
        if bridge is not None:
            await asyncio.to_thread(bridge.stop)
        decoder.close()
        metrics.close()
        db.close()
        raise
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(
        server=server,
        port=port,
        app=app,
        health=health_servicer,
        bridge=bridge,
        metrics_port=metrics_port,
        authenticator=authenticator,
        policy=policy,
        http=http,
        http_port=http_port,
        decoder=decoder,
    )
    if settings.tokens_file and settings.tokens_file_check_seconds > 0:
        running.tokens_watch = asyncio.create_task(
            running.watch_tokens_file(settings.tokens_file_check_seconds)
        )
    running.retention = Retention(db, settings, metrics)
    if running.retention.enabled:
        running.pruning = asyncio.create_task(running.retention.run())
    reaper = LeaseReaper(db, settings, orchestration_settings(settings), metrics)
    running.reaping = asyncio.create_task(reaper.run())
    return running


# Each service's servicer, on both edges, and how it joins the gRPC server.
_SERVICERS: dict[
    str, tuple[Callable[[AppContext], Any], Callable[[Any, grpc.aio.Server], None]]
] = {
    "FlowService": (FlowServicer, flow_service_pb2_grpc.add_FlowServiceServicer_to_server),
    "DeploymentService": (
        DeploymentServicer,
        deployment_service_pb2_grpc.add_DeploymentServiceServicer_to_server,
    ),
    "FlowRunService": (
        FlowRunServicer,
        flow_run_service_pb2_grpc.add_FlowRunServiceServicer_to_server,
    ),
    "TaskRunService": (
        TaskRunServicer,
        task_run_service_pb2_grpc.add_TaskRunServiceServicer_to_server,
    ),
    "LogService": (LogServicer, log_service_pb2_grpc.add_LogServiceServicer_to_server),
    "ConcurrencyLimitService": (
        ConcurrencyLimitServicer,
        concurrency_limit_service_pb2_grpc.add_ConcurrencyLimitServiceServicer_to_server,
    ),
    "ServerService": (ServerServicer, server_service_pb2_grpc.add_ServerServiceServicer_to_server),
}


def _servicers(edge: AppContext) -> list[tuple[ServiceDescriptor, Any]]:
    """Every service with the servicer that handles its calls, on both edges."""
    return [(service, _SERVICERS[service.name][0](edge)) for service in SERVICES]


@asynccontextmanager
async def serving(
    settings: Settings, *, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[RunningServer]:
    running = await start(settings, tracer_provider=tracer_provider)
    try:
        yield running
    finally:
        await running.stop()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then let running calls finish within the grace period."""
    configure_logging(settings.log_level, settings.log_format)
    # Handlers first: a supervisor may send SIGTERM the moment it sees "listening".
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(settings)
    if running.decoder is not None:
        running.decoder.warm()
    collect_garbage_seldom()
    loop.add_signal_handler(signal.SIGHUP, running.reload_tokens)
    host = settings.listen_address.rsplit(":", 1)[0]
    http_host = settings.http_address.rsplit(":", 1)[0]
    authenticated = running.authenticator is not None and running.authenticator.enabled
    if not authenticated and not settings.mutual_tls:
        log.warning(
            "server.unauthenticated",
            detail="no tokens configured: every client that reaches the port may read and write",
        )
    elif authenticated and not settings.tls and not is_loopback(settings.listen_address):
        log.warning(
            "server.plaintext_tokens",
            detail="tokens cross the network in plain text: configure TLS (--tls-cert-file)",
        )
    log.info(
        "server.listening",
        address=f"{host}:{running.port}",
        port=running.port,
        database=running.app.db.url.render_as_string(hide_password=True),
        tls="mutual" if settings.mutual_tls else ("on" if settings.tls else "off"),
        http=None
        if running.http_port is None
        else f"{'https' if settings.tls else 'http'}://{http_host}:{running.http_port}",
        tokens=authenticated,
        metrics_port=running.metrics_port,
        tracing=settings.tracing,
    )
    await stop.wait()
    log.info("server.stopping", grace_seconds=settings.shutdown_grace_seconds)
    await running.stop()
    log.info("server.stopped")


def collect_garbage_seldom() -> None:
    """Fewer and shorter pauses of the garbage collector in a server that holds many
    connections: what start-up made is set aside for good (gc.freeze), and young objects are
    collected once 50,000 have been made, not 700. With the defaults, a collection over the
    objects of a thousand watch streams stalled the event loop in the middle of a change's
    fan-out, and its last watchers waited for it (BENCHMARKS.md, watch fan-out over HTTP). Only
    `runwire server start` does this: a program that embeds the server keeps its own."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(overrides: Mapping[str, Any] | None = None) -> None:
    """`runwire server start`: load the settings (RUNWIRE_* variables, then `overrides`, the
    command line's flags) and serve until stopped.

    The one place a server that cannot start says why: one line on stderr, `runwire: ...`
    naming the setting, and exit code 2 (3 when the database did not answer).
    """
    try:
        settings = Settings.load(overrides)
        asyncio.run(serve(settings))
    except (SchemaMismatch, ConfigurationError) as exc:
        print(f"runwire: {exc}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
