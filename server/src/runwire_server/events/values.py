"""The events of a flow run as domain values, and the markers a watch stream adds to them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Protocol

from runwire_server.orchestration.states import State
from runwire_server.records import Log


@dataclass(frozen=True, slots=True)
class FlowRunStateChanged:
    flow_run_id: uuid.UUID
    state: State
    kind: ClassVar[str] = "flow_run_state"


@dataclass(frozen=True, slots=True)
class TaskRunStateChanged:
    flow_run_id: uuid.UUID
    task_run_id: uuid.UUID
    task_key: str
    state: State
    kind: ClassVar[str] = "task_run_state"


@dataclass(frozen=True, slots=True)
class LogWritten:
    log: Log
    kind: ClassVar[str] = "log"

    @property
    def flow_run_id(self) -> uuid.UUID:
        return self.log.flow_run_id


@dataclass(frozen=True, slots=True)
class RunDeleted:
    flow_run_id: uuid.UUID
    kind: ClassVar[str] = "end"


RunEvent = FlowRunStateChanged | TaskRunStateChanged | LogWritten | RunDeleted


@dataclass(frozen=True, slots=True)
class Event:
    """One committed event of a flow run, numbered `seq` on the server's one sequence.

    `payload` is the event as the edge encodes it (with its cursor), made once when it commits
    and sent as is to every watcher; an empty payload means "encode `value` at `seq`". `value`
    is the domain event: events read back from storage come without it, and a watcher that
    needs it decodes the payload (Codec.decode)."""

    seq: int
    flow_run_id: uuid.UUID
    kind: str
    payload: bytes
    value: RunEvent | None = None


class Codec(Protocol):
    """How events are stored and sent: the edge's encoding, given to the outbox at start-up.

    An event is encoded in two steps so that the costly one runs before the transaction takes
    the next numbers of the sequence, whose lock every writer waits for until it commits."""

    def body(self, value: RunEvent) -> bytes:
        """The event as a watch stream sends it, but for its cursor."""

    def numbered(self, seq: int, body: bytes) -> bytes:
        """The encoded body with `seq` as its cursor."""

    def decode(self, flow_run_id: uuid.UUID, payload: bytes) -> RunEvent:
        """The domain event of a stored payload of the run."""


class EndReason(enum.Enum):
    RUN_FINISHED = "run_finished"
    RUN_DELETED = "run_deleted"
    SERVER_SHUTDOWN = "server_shutdown"


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Every stored event up to `cursor` has been sent; live ones follow."""

    cursor: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for a while; `time_in_state` since the run's current state, if known."""

    cursor: int
    time_in_state: timedelta | None = None


@dataclass(frozen=True, slots=True)
class End:
    """The stream ends, and why."""

    cursor: int
    reason: EndReason


WatchItem = Event | CaughtUp | Heartbeat | End
