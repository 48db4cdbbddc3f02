import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { type FlowRun, FlowRunSchema } from "../src/gen/runwire/v1/flow_run_pb";
import { type State, StateSchema, StateType } from "../src/gen/runwire/v1/state_pb";
import { EARLY_MAX, EMPTY_LIST, type ListRules, addPage, applyEvent, sameView, upsertRuns } from "../src/runs/liveList";

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

describe("runs the list has not loaded", () => {
  const states = (l: { runs: readonly FlowRun[] }) => l.runs.map((r) => r.state?.type);

  it("does not call an older run's change new while pages are unread (newest first)", () => {
    const l = addPage(EMPTY_LIST, page([run("09"), run("08")], "more", 10n), true);
    const out = applyEvent(l, { cursor: 11n, flowRunId: "03", state: state(StateType.FAILED, 50) }, ALL);
    // Its page will bring it: nothing to read now, nothing pending.
    expect(out.fetch).toEqual([]);
    expect(out.list.pending.size).toBe(0);
    // Even when read anyway (an earlier event asked), it is neither placed nor pending.
    const read = upsertRuns(out.list, [run("03", StateType.FAILED, 50)], ALL);
    expect(ids(read)).toEqual(["09", "08"]);
    expect(read.pending.size).toBe(0);
    // A run newer than the first row is placed at the top.
    const fresh = applyEvent(l, { cursor: 11n, flowRunId: "10", state: state(StateType.PENDING, 50) }, ALL);
    expect(fresh.fetch).toEqual(["10"]);
    const placed = upsertRuns(fresh.list, [run("10", StateType.PENDING, 50)], ALL);
    expect(ids(placed)).toEqual(["10", "09", "08"]);
    expect(placed.pending.size).toBe(0);
  });

  it("applies a change that came while the run's page was in flight", () => {
    const l = addPage(EMPTY_LIST, page([run("09"), run("08")], "more", 10n), true);
    // The next page is asked for; meanwhile run 05 (on it) fails, and 04 runs.
    let cur = applyEvent(l, { cursor: 11n, flowRunId: "05", state: state(StateType.FAILED, 50) }, ALL).list;
    cur = applyEvent(cur, { cursor: 12n, flowRunId: "04", state: state(StateType.RUNNING, 60) }, ALL).list;
    expect(cur.early.size).toBe(2);
    // The page was read after event 11 but before event 12: it has 05 failed, 04 still pending.
    const next = addPage(
      cur,
      page([run("05", StateType.FAILED, 50), run("04", StateType.PENDING, 1), run("03", StateType.PENDING, 1)], "", 11n),
      false,
    );
    expect(ids(next)).toEqual(["09", "08", "05", "04", "03"]);
    expect(states(next)).toEqual([
      StateType.PENDING,
      StateType.PENDING,
      StateType.FAILED,
      StateType.RUNNING,
      StateType.PENDING,
    ]);
    expect(next.runs[3].startTime).toEqual(timestampFromMs(T0 + 60));
    expect(next.early.size).toBe(0);
    expect(next.pending.size).toBe(0);
  });

  it("keeps a page's state when the page is newer than the remembered event", () => {
    const l = addPage(EMPTY_LIST, page([run("09")], "more", 10n), true);
    const cur = applyEvent(l, { cursor: 11n, flowRunId: "05", state: state(StateType.RUNNING, 50) }, ALL).list;
    const next = addPage(cur, page([run("05", StateType.COMPLETED, 70)], "", 20n), false);
    expect(states(next)).toEqual([StateType.PENDING, StateType.COMPLETED]);
    expect(next.early.size).toBe(0);
  });

  it("applies a change that came while a run named by the watch was being read", () => {
    const l = addPage(EMPTY_LIST, page([run("09")], "", 10n), true);
    let cur = applyEvent(l, { cursor: 11n, flowRunId: "10", state: state(StateType.PENDING, 50) }, ALL).list;
    cur = applyEvent(cur, { cursor: 12n, flowRunId: "10", state: state(StateType.RUNNING, 60) }, ALL).list;
    const next = upsertRuns(cur, [run("10", StateType.PENDING, 50)], ALL, 11n);
    expect(ids(next)).toEqual(["10", "09"]);
    expect(states(next)).toEqual([StateType.RUNNING, StateType.PENDING]);
  });

  it("remembers a bounded number of runs, the latest event of each", () => {
    let l = addPage(EMPTY_LIST, page([run("zz")], "more", 0n), true);
    for (let i = 1; i <= EARLY_MAX + 5; i++) {
      l = applyEvent(l, { cursor: BigInt(i), flowRunId: `a${String(i).padStart(5, "0")}`, state: state(StateType.RUNNING, i) }, ALL).list;
    }
    expect(l.early.size).toBe(EARLY_MAX);
    expect(l.early.has("a00001")).toBe(false);
    expect(l.early.has(`a${String(EARLY_MAX + 5).padStart(5, "0")}`)).toBe(true);
  });

  it("offers only runs created since the read in other orders, and forgets them once loaded", () => {
    const rules = { ...ALL, newestFirst: false };
    // Oldest first, pages unread; the newest run when the list was read was "50".
    const l = addPage(EMPTY_LIST, page([run("01"), run("02")], "more", 10n), true, "50");
    // An old run (on a page not read yet) changes: not new.
    const old = applyEvent(l, { cursor: 11n, flowRunId: "30", state: state(StateType.FAILED, 50) }, rules);
    expect(old.fetch).toEqual([]);
    expect(old.list.pending.size).toBe(0);
    expect(upsertRuns(old.list, [run("30", StateType.FAILED, 50)], rules).pending.size).toBe(0);
    // A run created since: new, offered.
    const fresh = applyEvent(old.list, { cursor: 12n, flowRunId: "51", state: state(StateType.SCHEDULED, 60) }, rules);
    expect(fresh.fetch).toEqual(["51"]);
    const offered = upsertRuns(fresh.list, [run("51", StateType.SCHEDULED, 60)], rules);
    expect([...offered.pending]).toEqual(["51"]);
    // Scrolling reads the pages it is on: it is shown, and no longer counted.
    const more = addPage(offered, page([run("30", StateType.PENDING, 1), run("51", StateType.SCHEDULED, 60)], "", 12n), false);
    expect(ids(more)).toEqual(["01", "02", "30", "51"]);
    expect(more.pending.size).toBe(0);
    expect(more.early.size).toBe(0);
  });

  it("stops offering a new run that leaves the states the page shows", () => {
    const rules = { states: [StateType.RUNNING], newestFirst: false };
    const l = addPage(EMPTY_LIST, page([run("01", StateType.RUNNING)], "", 10n), true, "01");
    const offered = upsertRuns(l, [run("05", StateType.RUNNING, 5)], rules);
    expect([...offered.pending]).toEqual(["05"]);
    const left = applyEvent(offered, { cursor: 11n, flowRunId: "05", state: state(StateType.COMPLETED, 9) }, rules);
    expect(left.list.pending.size).toBe(0);
  });
});

describe("re-renders", () => {
  const rules = { states: [StateType.FAILED], newestFirst: true };
  const l = addPage(EMPTY_LIST, page([run("09", StateType.FAILED, 10)], "", 10n), true);

  it("shows the same list for events that change nothing shown, with the cursor moved on", () => {
    // A state already shown, an older one, and a run the page does not show.
    for (const event of [
      { cursor: 11n, flowRunId: "09", state: l.runs[0].state! },
      { cursor: 11n, flowRunId: "09", state: state(StateType.RUNNING, 5) },
      { cursor: 11n, flowRunId: "07", state: state(StateType.RUNNING, 50) },
    ]) {
      const out = applyEvent(l, event, rules);
      expect(sameView(out.list, l)).toBe(true);
      expect(out.list.changes).toBe(l.changes);
      expect(out.list.cursor).toBe(11n);
    }
  });

  it("shows a new list, and counts a change, when a row or a matching run changes", () => {
    const row = applyEvent(l, { cursor: 11n, flowRunId: "09", state: state(StateType.COMPLETED, 50) }, rules);
    expect(sameView(row.list, l)).toBe(false);
    expect(row.list.changes).toBe(l.changes + 1);
    const other = applyEvent(l, { cursor: 11n, flowRunId: "10", state: state(StateType.FAILED, 50) }, rules);
    expect(other.list.changes).toBe(l.changes + 1);
    expect(sameView(other.list, l)).toBe(false);
  });
});
