import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { type FlowRun, FlowRunSchema } from "../src/gen/runwire/v1/flow_run_pb";
import { type State, StateSchema, StateType } from "../src/gen/runwire/v1/state_pb";
import { EMPTY_LIST, type ListRules, addPage, applyEvent, upsertRuns } from "../src/runs/liveList";

const T0 = Date.UTC(2026, 11, 3, 12);
const ALL: ListRules = { states: [], newestFirst: true };

function state(type: StateType, at: number, id = `s-${type}-${at}`): State {
  return create(StateSchema, { id, type, timestamp: timestampFromMs(T0 + at) });
}

function run(id: string, type = StateType.PENDING, at = 0): FlowRun {
  return create(FlowRunSchema, { id, name: id, state: state(type, at) });
}

function page(runs: FlowRun[], nextPageToken = "", watchCursor = 10n) {
  return { flowRuns: runs, nextPageToken, watchCursor };
}

const ids = (l: { runs: readonly FlowRun[] }) => l.runs.map((r) => r.id);

describe("addPage", () => {
  it("starts from the first page and its cursor, and extends without repeats", () => {
    let l = addPage(EMPTY_LIST, page([run("09"), run("08")], "t1", 5n), true);
    expect(l.cursor).toBe(5n);
    expect(l.loaded).toBe(true);
    l = addPage(l, page([run("08"), run("07")], "", 99n), false);
    expect(ids(l)).toEqual(["09", "08", "07"]);
    expect(l.cursor).toBe(5n);
    expect(l.nextToken).toBe("");
    expect(l.index.get("07")).toBe(2);
    // A first page again (a new filter) replaces the list.
    expect(ids(addPage(l, page([run("01")]), true))).toEqual(["01"]);
  });
});

describe("applyEvent", () => {
  const base = addPage(EMPTY_LIST, page([run("09"), run("08", StateType.RUNNING, 10)], "", 10n), true);

  it("updates a row in place, with the times its new state gives", () => {
    const out = applyEvent(base, { cursor: 11n, flowRunId: "09", state: state(StateType.RUNNING, 20) }, ALL);
    expect(out.list.runs[0].state?.type).toBe(StateType.RUNNING);
    expect(out.list.runs[0].startTime).toEqual(timestampFromMs(T0 + 20));
    expect(out.list.cursor).toBe(11n);
    expect(out.list.changes).toBe(base.changes + 1);
    expect(out.fetch).toEqual([]);
    // Finishing asks for the run again, for the run time the server keeps.
    const done = applyEvent(out.list, { cursor: 12n, flowRunId: "09", state: state(StateType.COMPLETED, 30) }, ALL);
    expect(done.list.runs[0].endTime).toEqual(timestampFromMs(T0 + 30));
    expect(done.fetch).toEqual(["09"]);
  });

  it("ignores events at or before its cursor, and states older than the row's", () => {
    expect(applyEvent(base, { cursor: 10n, flowRunId: "09", state: state(StateType.FAILED, 50) }, ALL).list).toBe(base);
    const older = applyEvent(base, { cursor: 11n, flowRunId: "08", state: state(StateType.PENDING, 5) }, ALL);
    expect(older.list.runs[1].state?.type).toBe(StateType.RUNNING);
    expect(older.list.cursor).toBe(11n);
    const same = applyEvent(base, { cursor: 11n, flowRunId: "08", state: base.runs[1].state! }, ALL);
    expect(same.list.runs).toBe(base.runs);
  });

  it("asks for a run it lacks when its state is one the page shows", () => {
    const out = applyEvent(base, { cursor: 11n, flowRunId: "10", state: state(StateType.FAILED, 0) }, ALL);
    expect(out.fetch).toEqual(["10"]);
    const failedOnly = { ...ALL, states: [StateType.FAILED] };
    expect(applyEvent(base, { cursor: 11n, flowRunId: "10", state: state(StateType.RUNNING, 0) }, failedOnly).fetch).toEqual([]);
    // A row that leaves the state filter stays, showing its new state.
    const left = applyEvent(base, { cursor: 11n, flowRunId: "09", state: state(StateType.RUNNING, 1) }, failedOnly);
    expect(left.list.runs[0].state?.type).toBe(StateType.RUNNING);
  });
});

describe("upsertRuns", () => {
  it("puts new runs in id order at the top when newest come first", () => {
    const l = addPage(EMPTY_LIST, page([run("09"), run("08")], ""), true);
    const next = upsertRuns(l, [run("10"), run("11"), run("10")], ALL);
    expect(ids(next)).toEqual(["11", "10", "09", "08"]);
    expect(next.index.get("09")).toBe(2);
  });

  it("leaves a run older than the last row read to its page", () => {
    const l = addPage(EMPTY_LIST, page([run("09"), run("08")], "more"), true);
    expect(ids(upsertRuns(l, [run("05")], ALL))).toEqual(["09", "08"]);
    expect(ids(upsertRuns(l, [run("10")], ALL))).toEqual(["10", "09", "08"]);
  });

  it("counts new runs as pending in other orders, once each", () => {
    const rules = { ...ALL, newestFirst: false };
    const l = addPage(EMPTY_LIST, page([run("01")]), true);
    const next = upsertRuns(upsertRuns(l, [run("10")], rules), [run("10"), run("11")], rules);
    expect(ids(next)).toEqual(["01"]);
    expect([...next.pending]).toEqual(["10", "11"]);
  });

  it("refreshes rows unless the read is older than what the watch said", () => {
    const l = addPage(EMPTY_LIST, page([run("09", StateType.RUNNING, 10)]), true);
    const fresh = { ...run("09", StateType.COMPLETED, 20), totalRunTime: { seconds: 3n, nanos: 0 } } as FlowRun;
    expect(upsertRuns(l, [fresh], ALL).runs[0].state?.type).toBe(StateType.COMPLETED);
    expect(upsertRuns(l, [run("09", StateType.PENDING, 1)], ALL).runs[0].state?.type).toBe(StateType.RUNNING);
  });

  it("skips runs whose state the page does not show", () => {
    const l = addPage(EMPTY_LIST, page([run("01", StateType.FAILED)]), true);
    const rules = { ...ALL, states: [StateType.FAILED] };
    expect(upsertRuns(l, [run("02", StateType.COMPLETED)], rules)).toBe(l);
  });
});
