import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { FlowRunSchema } from "../src/gen/runwire/v1/flow_run_pb";
import { LogSchema } from "../src/gen/runwire/v1/log_pb";
import { StateSchema, StateType } from "../src/gen/runwire/v1/state_pb";
import { TaskRunSchema } from "../src/gen/runwire/v1/task_run_pb";
import { StreamEnd_Reason, WatchFlowRunResponseSchema, type WatchFlowRunResponse } from "../src/gen/runwire/v1/watch_pb";
import { initialLiveRun, isFinished, MAX_LOGS, reduce, type LiveRun } from "../src/run/liveRun";

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);

function state(id: string, type: StateType, atMs: number, name = "") {
  return create(StateSchema, { id, type, name, timestamp: timestampFromMs(atMs) });
}
function runEvent(cursor: number, s: ReturnType<typeof state>): WatchFlowRunResponse {
  return create(WatchFlowRunResponseSchema, {
    cursor: BigInt(cursor),
    event: { case: "flowRunState", value: { flowRunId: "run", state: s } },
  });
}
function taskEvent(cursor: number, taskRunId: string, s: ReturnType<typeof state>): WatchFlowRunResponse {
  return create(WatchFlowRunResponseSchema, {
    cursor: BigInt(cursor),
    event: { case: "taskRunState", value: { taskRunId, taskKey: `key-${taskRunId}`, state: s } },
  });
}
function logEvent(cursor: number, id: string, atMs: number, message = id): WatchFlowRunResponse {
  return create(WatchFlowRunResponseSchema, {
    cursor: BigInt(cursor),
    event: { case: "log", value: create(LogSchema, { id, message, level: 20, timestamp: timestampFromMs(atMs) }) },
  });
}
function endEvent(cursor: number, reason: StreamEnd_Reason): WatchFlowRunResponse {
  return create(WatchFlowRunResponseSchema, { cursor: BigInt(cursor), event: { case: "end", value: { reason } } });
}
function apply(live: LiveRun, ...events: WatchFlowRunResponse[]): LiveRun {
  return reduce(live, { type: "events", events });
}
const pending = state("s1", StateType.PENDING, T0);
const running = state("s2", StateType.RUNNING, T0 + 1000);
const failed = state("s3", StateType.FAILED, T0 + 5000);

function withRun(): LiveRun {
  return reduce(initialLiveRun(), { type: "run", run: create(FlowRunSchema, { id: "run", name: "r", state: pending }) });
}

describe("run states", () => {
  it("moves the run to each new state with the server's bookkeeping", () => {
    let live = apply(withRun(), runEvent(1, running));
    expect(live.run?.state?.type).toBe(StateType.RUNNING);
    expect(live.run?.runCount).toBe(1);
    expect(live.run?.startTime).toEqual(running.timestamp);
    live = apply(live, runEvent(2, failed));
    expect(live.run?.endTime).toEqual(failed.timestamp);
    expect(Number(live.run?.totalRunTime?.seconds)).toBe(4);
    expect(live.states.map((s) => s.id)).toEqual(["s2", "s3"]);
    expect(live.cursor).toBe(2n);
  });

  it("keeps a newer state from the stream over an older fetched run", () => {
    let live = apply(initialLiveRun(), runEvent(1, running));
    live = reduce(live, { type: "run", run: create(FlowRunSchema, { id: "run", state: pending }) });
    expect(live.run?.state?.id).toBe("s2");
  });

  it("lists states once each, oldest first, whichever came first", () => {
    let live = apply(withRun(), runEvent(3, failed));
    live = reduce(live, { type: "states", states: [failed, pending, running] });
    expect(live.states.map((s) => s.id)).toEqual(["s1", "s2", "s3"]);
  });

  it("ignores a replayed state it already has", () => {
    const live = apply(withRun(), runEvent(1, running));
    const again = apply(live, runEvent(1, running));
    expect(again.run).toBe(live.run);
    expect(again.states).toBe(live.states);
  });
});

describe("task runs", () => {
  it("recolours a known task and counts its runs", () => {
    let live = reduce(withRun(), { type: "tasks", tasks: [create(TaskRunSchema, { id: "t1", name: "extract", state: pending })] });
    live = apply(live, taskEvent(1, "t1", running));
    const t = live.tasks.get("t1");
    expect(t?.state?.type).toBe(StateType.RUNNING);
    expect(t?.runCount).toBe(1);
    expect(t?.name).toBe("extract");
    expect(live.unknownTasks.size).toBe(0);
  });

  it("shows an unknown task under its key and remembers to fetch it", () => {
    let live = apply(withRun(), taskEvent(1, "t9", running));
    expect(live.tasks.get("t9")?.name).toBe("key-t9");
    expect([...live.unknownTasks]).toEqual(["t9"]);
    live = reduce(live, { type: "tasks", tasks: [create(TaskRunSchema, { id: "t9", name: "late task", state: pending })] });
    expect(live.unknownTasks.size).toBe(0);
    expect(live.tasks.get("t9")?.name).toBe("late task");
    // The listed row was older than the event: the event's state stays.
    expect(live.tasks.get("t9")?.state?.id).toBe("s2");
  });
});

describe("logs", () => {
  it("orders lines by time and drops repeats from a replay", () => {
    let live = apply(withRun(), logEvent(1, "a", T0 + 10), logEvent(2, "c", T0 + 30));
    live = apply(live, logEvent(3, "b", T0 + 20), logEvent(2, "c", T0 + 30), logEvent(1, "a", T0 + 10));
    expect(live.logs.map((l) => l.id)).toEqual(["a", "b", "c"]);
    expect(live.cursor).toBe(3n);
  });

  it("keeps the cursor growing when a replay resends older events", () => {
    const live = apply(withRun(), logEvent(7, "x", T0), logEvent(5, "y", T0));
    expect(live.cursor).toBe(7n);
  });

  it("keeps at most MAX_LOGS lines, newest kept", () => {
    const events = Array.from({ length: MAX_LOGS + 5 }, (_, i) => logEvent(i + 1, `l${i}`, T0 + i));
    const live = apply(withRun(), ...events);
    expect(live.logs.length).toBe(MAX_LOGS);
    expect(live.droppedLogs).toBe(5);
    expect(live.logs[0].id).toBe("l5");
  });

  it("starts over on reset", () => {
    const live = reduce(apply(withRun(), logEvent(1, "a", T0)), { type: "reset" });
    expect(live.logs).toEqual([]);
    expect(live.cursor).toBeUndefined();
  });
});

describe("the stream's end", () => {
  it("is finished once the run is terminal and the stream said so, until a retry", () => {
    let live = apply(withRun(), runEvent(1, running), runEvent(2, failed));
    expect(isFinished(live)).toBe(false);
    live = apply(live, endEvent(2, StreamEnd_Reason.RUN_FINISHED));
    expect(isFinished(live)).toBe(true);
    // A later stream's catch-up does not undo it; a retry does.
    live = apply(live, create(WatchFlowRunResponseSchema, { cursor: 2n, event: { case: "caughtUp", value: {} } }));
    expect(isFinished(live)).toBe(true);
    live = apply(live, runEvent(3, state("s4", StateType.SCHEDULED, T0 + 9000, "AwaitingRetry")));
    expect(isFinished(live)).toBe(false);
    expect(live.run?.endTime).toBeUndefined();
  });

  it("does not say finished for a shutdown", () => {
    const live = apply(withRun(), runEvent(1, failed), endEvent(1, StreamEnd_Reason.SERVER_SHUTDOWN));
    expect(isFinished(live)).toBe(false);
  });
});
