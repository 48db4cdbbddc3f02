import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { FlowRunSchema } from "../src/gen/runwire/v1/flow_run_pb";
import { StateSchema, StateType } from "../src/gen/runwire/v1/state_pb";
import { WatchFlowRunResponseSchema } from "../src/gen/runwire/v1/watch_pb";
import { initialLiveRun, reduce } from "../src/run/liveRun";
import { EMPTY_LIST, applyEvent } from "../src/runs/liveList";
import {
  formatDuration,
  formatRelative,
  formatTime,
  isTerminal,
  levelName,
  millisOf,
  runDuration,
  secondsOf,
  stateFromSlug,
  stateLook,
  stateSlug,
  STATE_ORDER,
} from "../src/lib/format";

describe("states", () => {
  it("names and colours every state, with a mark beside the colour", () => {
    for (const type of STATE_ORDER) {
      const look = stateLook(type);
      expect(look.label).not.toBe("Unknown");
      expect(look.mark).not.toBe("");
    }
    expect(stateLook(StateType.CANCELLING)).toMatchObject({ label: "Cancelling", tone: "cancelled" });
    expect(stateLook(undefined).tone).toBe("unknown");
  });

  it("round-trips states through their URL names and refuses others", () => {
    for (const type of STATE_ORDER) expect(stateFromSlug(stateSlug(type))).toBe(type);
    expect(stateSlug(StateType.FAILED)).toBe("failed");
    expect(stateFromSlug("FAILED")).toBe(StateType.FAILED);
    expect(stateFromSlug("unspecified")).toBeUndefined();
    expect(stateFromSlug("nope")).toBeUndefined();
  });

  it("knows which states are final", () => {
    expect(isTerminal(StateType.COMPLETED)).toBe(true);
    expect(isTerminal(StateType.CRASHED)).toBe(true);
    expect(isTerminal(StateType.CANCELLING)).toBe(false);
    expect(isTerminal(StateType.PAUSED)).toBe(false);
    expect(isTerminal(undefined)).toBe(false);
  });
});

describe("durations", () => {
  it("shows the two largest units", () => {
    expect(formatDuration(0.45)).toBe("450ms");
    expect(formatDuration(4.25)).toBe("4.3s");
    expect(formatDuration(5)).toBe("5s");
    expect(formatDuration(12.4)).toBe("12s");
    expect(formatDuration(185)).toBe("3m 05s");
    expect(formatDuration(2 * 3600 + 4 * 60 + 59)).toBe("2h 04m");
    expect(formatDuration(3 * 86400 + 4 * 3600 + 1)).toBe("3d 4h");
    expect(formatDuration(-1)).toBe("—");
    expect(formatDuration(Number.NaN)).toBe("—");
  });

  it("reads protobuf durations and timestamps", () => {
    expect(secondsOf(create(DurationSchema, { seconds: 90n, nanos: 500_000_000 }))).toBe(90.5);
    expect(secondsOf(undefined)).toBe(0);
    expect(millisOf(timestampFromMs(1_700_000_000_123))).toBe(1_700_000_000_123);
    expect(millisOf(undefined)).toBeUndefined();
  });

  it("counts a running run's time up to now, and a finished run's total", () => {
    const start = timestampFromMs(1_000_000);
    const running = { startTime: start, state: { type: StateType.RUNNING } };
    expect(runDuration(running, 1_000_000 + 42_000)).toBe(42);
    const done = {
      startTime: start,
      totalRunTime: create(DurationSchema, { seconds: 30n }),
      state: { type: StateType.COMPLETED },
    };
    expect(runDuration(done, 9_999_999)).toBe(30);
    const ended = { startTime: start, endTime: timestampFromMs(1_005_000), state: { type: StateType.FAILED } };
    expect(runDuration(ended, 9_999_999)).toBe(5);
    expect(runDuration({ state: { type: StateType.SCHEDULED } }, 0)).toBeUndefined();
  });

  it("counts a retried run's running time only, not its wait for the retry", () => {
    // First attempt ran 60 s; it then waited an hour to be retried; it has run 30 s since.
    const retried = {
      startTime: timestampFromMs(1_000_000),
      totalRunTime: create(DurationSchema, { seconds: 60n }),
      state: { type: StateType.RUNNING, timestamp: timestampFromMs(1_000_000 + 3_660_000) },
    };
    expect(runDuration(retried, 1_000_000 + 3_690_000)).toBe(90);
  });

  it("gives the runs table and the run page one duration for the same events", () => {
    const at = (ms: number) => timestampFromMs(1_000_000 + ms);
    const s = (type: StateType, ms: number) => create(StateSchema, { id: `s${ms}`, type, timestamp: at(ms) });
    const events = [
      s(StateType.RUNNING, 0),
      s(StateType.FAILED, 60_000),
      s(StateType.SCHEDULED, 61_000), // awaiting retry
      s(StateType.RUNNING, 3_661_000),
    ];
    let row = create(FlowRunSchema, { id: "r1", state: s(StateType.PENDING, -1000) });
    let page = reduce(initialLiveRun(), { type: "run", run: row });
    events.forEach((state, i) => {
      row = applyEvent(
        { ...EMPTY_LIST, runs: [row], index: new Map([["r1", 0]]), loaded: true },
        { cursor: BigInt(i + 1), flowRunId: "r1", state },
        { states: [], newestFirst: true },
      ).list.runs[0];
      page = reduce(page, {
        type: "event",
        event: create(WatchFlowRunResponseSchema, {
          cursor: BigInt(i + 1),
          event: { case: "flowRunState", value: { flowRunId: "r1", state } },
        }),
      });
    });
    const now = 1_000_000 + 3_691_000;
    expect(runDuration(row, now)).toBe(90);
    expect(runDuration(page.run!, now)).toBe(90);
  });
});

describe("times", () => {
  const now = Date.UTC(2026, 11, 3, 12, 0, 0);

  it("says how long ago, or how soon", () => {
    expect(formatRelative(now - 2000, now)).toBe("now");
    expect(formatRelative(now - 3 * 60_000, now)).toBe("3 minutes ago");
    expect(formatRelative(now + 2 * 3600_000, now)).toBe("in 2 hours");
    expect(formatRelative(now - 86400_000, now)).toBe("yesterday");
    expect(formatRelative(undefined, now)).toBe("—");
  });

  it("writes absolute times in ISO order", () => {
    expect(formatTime(now)).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
    expect(formatTime(undefined)).toBe("—");
  });
});

describe("log levels", () => {
  it("names Python's levels", () => {
    expect([10, 20, 30, 40, 50, 5].map(levelName)).toEqual(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET"]);
  });
});
