// What the run page shows, as a pure function of what it has been told: the run, its state
// history, its task runs and its logs, from the first calls and then from the one watch stream.
// Pure, so every ordering of answers and events can be pinned by unit tests.
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import type { Log } from "../gen/runwire/v1/log_pb";
import type { State } from "../gen/runwire/v1/state_pb";
import type { TaskRun } from "../gen/runwire/v1/task_run_pb";
import { StreamEnd_Reason, type WatchFlowRunResponse } from "../gen/runwire/v1/watch_pb";
import { isTerminal, millisOf } from "../lib/format";
import { advanceRun, stateOrder } from "../lib/runState";
import { create } from "@bufbuild/protobuf";
import { TaskRunSchema } from "../gen/runwire/v1/task_run_pb";

/** The most log lines kept: a run that logs without end must not exhaust the tab. */
export const MAX_LOGS = 20_000;

export interface LiveRun {
  run: FlowRun | undefined;
  /** The run's states, oldest first, one per state id. */
  states: State[];
  /** Task runs by id, in the order first seen. */
  tasks: Map<string, TaskRun>;
  /** Logs by timestamp (ties in stream order). */
  logs: Log[];
  logIds: Set<string>;
  /** How many old lines were dropped to stay within MAX_LOGS. */
  droppedLogs: number;
  /** The last cursor the stream gave: a reconnect resumes after it. */
  cursor: bigint | undefined;
  /** The stream has sent everything stored before it started. */
  caughtUp: boolean;
  /** A stream ended saying the run finished, and no later state has reopened it. */
  finished: boolean;
  /** Task run ids seen in events but not (yet) in the graph or task list. */
  unknownTasks: Set<string>;
}

export type Action =
  | { type: "run"; run: FlowRun }
  | { type: "states"; states: State[] }
  | { type: "tasks"; tasks: TaskRun[]; complete?: boolean }
  | { type: "event"; event: WatchFlowRunResponse }
  /** Events as the stream delivered them in one burst, applied in one pass. */
  | { type: "events"; events: WatchFlowRunResponse[] }
  | { type: "connected" }
  | { type: "reset" };

export function initialLiveRun(): LiveRun {
  return {
    run: undefined,
    states: [],
    tasks: new Map(),
    logs: [],
    logIds: new Set(),
    droppedLogs: 0,
    cursor: undefined,
    caughtUp: false,
    finished: false,
    unknownTasks: new Set(),
  };
}

export function reduce(live: LiveRun, action: Action): LiveRun {
  switch (action.type) {
    case "run":
      return { ...live, run: mergeRun(action.run, live.states) };
    case "states":
      return { ...live, states: mergeStates(live.states, action.states) };
    case "tasks":
      return mergeTasks(live, action.tasks);
    case "event":
      return reduceEvents(live, [action.event]);
    case "events":
      return reduceEvents(live, action.events);
    case "connected":
      return { ...live, caughtUp: false };
    case "reset":
      // The cursor is no longer usable (retention pruned past it): start over from the stream's
      // snapshot, which sends the logs again.
      return { ...live, logs: [], logIds: new Set(), droppedLogs: 0, cursor: undefined, caughtUp: false };
  }
}

function reduceEvents(live: LiveRun, events: WatchFlowRunResponse[]): LiveRun {
  let next = live;
  let logs: Log[] = [];
  for (const ev of events) {
    if (ev.event.case === "log") {
      // Lines are merged in one pass: a replay may bring thousands at once.
      logs.push(ev.event.value);
      next = next.cursor === undefined || ev.cursor > next.cursor ? { ...next, cursor: ev.cursor } : next;
    } else {
      if (logs.length) next = addLogs(next, logs);
      logs = [];
      next = onEvent(next, ev);
    }
  }
  return logs.length ? addLogs(next, logs) : next;
}

function onEvent(live: LiveRun, ev: WatchFlowRunResponse): LiveRun {
  const cursor = live.cursor === undefined || ev.cursor > live.cursor ? ev.cursor : live.cursor;
  const next: LiveRun = { ...live, cursor };
  const e = ev.event;
  switch (e.case) {
    case "flowRunState": {
      const state = e.value.state;
      if (!state) return next;
      next.states = mergeStates(live.states, [state]);
      if (live.run) next.run = withState(live.run, state);
      // A run that left its terminal state (retried) is live again.
      if (!isTerminal(state.type)) next.finished = false;
      return next;
    }
    case "taskRunState": {
      const { taskRunId, taskKey, state } = e.value;
      if (!state) return next;
      const tasks = new Map(live.tasks);
      const known = tasks.get(taskRunId);
      if (known) {
        tasks.set(taskRunId, withState(known, state));
      } else {
        // Shown at once under its key; the page fetches the rest of it.
        tasks.set(taskRunId, withState(placeholderTask(taskRunId, taskKey, live.run?.id ?? ""), state));
        next.unknownTasks = new Set(live.unknownTasks).add(taskRunId);
      }
      next.tasks = tasks;
      return next;
    }
    case "log":
      return addLogs(next, [e.value]);
    case "caughtUp":
      return { ...next, caughtUp: true };
    case "end":
      return e.value.reason === StreamEnd_Reason.RUN_FINISHED ? { ...next, finished: true } : next;
    default:
      return next;
  }
}

/** A fetched run may predate a state event already applied: the newest known state wins. */
function mergeRun(incoming: FlowRun, states: State[]): FlowRun {
  const newest = states[states.length - 1];
  return newest ? withState(incoming, newest) : incoming;
}

/** The run or task run after entering `state` (the server's bookkeeping, done here too). */
export const withState = advanceRun;

function mergeStates(current: State[], incoming: State[]): State[] {
  if (incoming.length === 0) return current;
  const byId = new Map(current.map((s) => [s.id, s]));
  let changed = false;
  for (const s of incoming) {
    if (!byId.has(s.id)) {
      byId.set(s.id, s);
      changed = true;
    }
  }
  if (!changed) return current;
  return [...byId.values()].sort((a, b) => stateOrder(a, b));
}

function mergeTasks(live: LiveRun, incoming: TaskRun[]): LiveRun {
  const tasks = new Map(live.tasks);
  let unknown = live.unknownTasks;
  for (const t of incoming) {
    const known = tasks.get(t.id);
    // A listed task run may be older than a state event already applied to it.
    tasks.set(t.id, known?.state ? withState(t, known.state) : t);
    if (unknown.has(t.id)) {
      if (unknown === live.unknownTasks) unknown = new Set(unknown);
      unknown.delete(t.id);
    }
  }
  return { ...live, tasks, unknownTasks: unknown };
}

export function placeholderTask(id: string, taskKey: string, flowRunId: string): TaskRun {
  return create(TaskRunSchema, { id, flowRunId, taskKey, name: taskKey });
}

function logTime(log: Log): number {
  return millisOf(log.timestamp) ?? 0;
}

/** Logs in timestamp order, each once (a replay after reconnecting may resend some). */
export function addLogs(live: LiveRun, incoming: Log[]): LiveRun {
  const fresh = incoming.filter((l) => !live.logIds.has(l.id));
  if (fresh.length === 0) return live;
  const logs = live.logs.slice();
  const ids = new Set(live.logIds);
  for (const log of fresh) {
    ids.add(log.id);
    // Most lines arrive newest-last: look for the place from the end.
    let i = logs.length;
    const t = logTime(log);
    while (i > 0 && logTime(logs[i - 1]) > t) i--;
    logs.splice(i, 0, log);
  }
  let dropped = live.droppedLogs;
  if (logs.length > MAX_LOGS) {
    const cut = logs.length - MAX_LOGS;
    for (const old of logs.splice(0, cut)) ids.delete(old.id);
    dropped += cut;
  }
  return { ...live, logs, logIds: ids, droppedLogs: dropped };
}

/** The run is over and the server said so: the page stops saying "live". */
export function isFinished(live: LiveRun): boolean {
  return live.finished && (live.run === undefined || isTerminal(live.run.state?.type));
}
