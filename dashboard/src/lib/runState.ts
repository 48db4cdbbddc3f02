// A run's timing fields as the server's bookkeeping advances them on a state change (first
// start, end, run count, time running), so a page can show a new state at once, without
// waiting for a refetch. Shared by the runs list and the run page, so both show one duration.
import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { type State, StateType } from "../gen/runwire/v1/state_pb";
import type { TaskRun } from "../gen/runwire/v1/task_run_pb";
import { isTerminal, millisOf } from "./format";

/** > 0 when `a` is newer than `b`. */
export function stateOrder(a: State, b: State): number {
  return (millisOf(a.timestamp) ?? 0) - (millisOf(b.timestamp) ?? 0) || (a.timestamp?.nanos ?? 0) - (b.timestamp?.nanos ?? 0);
}

/** The run or task run after entering `state`. A state older than the current one changes nothing. */
export function advanceRun<T extends FlowRun | TaskRun>(run: T, state: State): T {
  const prev = run.state;
  if (prev && (prev.id === state.id || stateOrder(prev, state) > 0)) return run;
  const at = state.timestamp;
  const next = { ...run, state };
  if (state.type === StateType.RUNNING) {
    next.runCount = run.runCount + 1;
    if (!run.startTime) next.startTime = at;
  }
  if (prev?.type === StateType.RUNNING && prev.timestamp && at) {
    next.totalRunTime = addDuration(run.totalRunTime, (millisOf(at) ?? 0) - (millisOf(prev.timestamp) ?? 0));
  }
  if (isTerminal(state.type)) {
    if (!next.startTime) next.startTime = at;
    if (!run.endTime) next.endTime = at;
  } else if (isTerminal(prev?.type)) {
    next.endTime = undefined;
  }
  return next;
}

function addDuration(d: Duration | undefined, millis: number): Duration {
  const total = (d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0) + Math.max(0, millis);
  const seconds = Math.floor(total / 1000);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos: Math.round((total - seconds * 1000) * 1e6) });
}
