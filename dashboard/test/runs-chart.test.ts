import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { HistoryIntervalSchema, HistoryStateCountSchema } from "../src/gen/runwire/v1/history_pb";
import { StateType } from "../src/gen/runwire/v1/state_pb";
import { alignRange, chooseInterval, niceMax, stackBars, stateTotals, timeTicks } from "../src/runs/chart";

const H = 3600_000;
const T0 = Date.UTC(2026, 11, 3, 0);

function interval(start: number, states: [StateType, number, string?][]) {
  return create(HistoryIntervalSchema, {
    intervalStart: timestampFromMs(start),
    intervalEnd: timestampFromMs(start + H),
    states: states.map(([stateType, n, stateName]) =>
      create(HistoryStateCountSchema, { stateType, countRuns: BigInt(n), stateName: stateName ?? "" }),
    ),
  });
}

describe("chooseInterval", () => {
  it("gives 30 to 60 bars over each range the page offers", () => {
    for (const hours of [1, 24, 7 * 24, 30 * 24]) {
      const step = chooseInterval(new Date(T0), new Date(T0 + hours * H));
      const bars = (hours * 3600) / step;
      expect(bars, `${hours}h`).toBeGreaterThanOrEqual(30);
      expect(bars, `${hours}h`).toBeLessThanOrEqual(60);
    }
  });

  it("aligns the range to whole local intervals", () => {
    const r = alignRange(new Date(T0 + 10 * 60_000), new Date(T0 + 3 * H + 1), 3600, 0);
    expect(r.start.getTime()).toBe(T0);
    expect(r.end.getTime()).toBe(T0 + 4 * H);
    const east = alignRange(new Date(T0 + 10 * 60_000), new Date(T0 + H), 86400, -60);
    expect(east.start.getTime()).toBe(T0 - H);
  });
});

describe("stackBars", () => {
  it("stacks states bottom to top in the dashboard's order, merging names of one type", () => {
    const [bar] = stackBars([
      interval(T0, [
        [StateType.FAILED, 2],
        [StateType.COMPLETED, 5],
        [StateType.SCHEDULED, 1, "Late"],
        [StateType.SCHEDULED, 2, "Scheduled"],
      ]),
    ]);
    expect(bar.total).toBe(10);
    expect(bar.segments).toEqual([
      { state: StateType.SCHEDULED, count: 3, below: 0 },
      { state: StateType.COMPLETED, count: 5, below: 3 },
      { state: StateType.FAILED, count: 2, below: 8 },
    ]);
    expect(bar.start).toBe(T0);
    expect(bar.end).toBe(T0 + H);
  });

  it("keeps empty intervals as empty bars and totals by state", () => {
    const bars = stackBars([interval(T0, []), interval(T0 + H, [[StateType.RUNNING, 4]]), interval(T0 + 2 * H, [[StateType.RUNNING, 1]])]);
    expect(bars.map((b) => b.total)).toEqual([0, 4, 1]);
    expect(stateTotals(bars)).toEqual([{ state: StateType.RUNNING, count: 5 }]);
  });

  it("rounds the axis up to 1, 2 or 5 times a power of ten", () => {
    expect([0, 1, 3, 7, 12, 45, 101].map(niceMax)).toEqual([1, 1, 5, 10, 20, 50, 200]);
  });

  it("ticks on round times only", () => {
    const bars = stackBars(Array.from({ length: 24 }, (_, i) => interval(T0 + i * H, [])));
    const ticks = timeTicks(bars, 3600, 7, 0);
    expect(ticks.length).toBeLessThanOrEqual(7);
    expect(ticks.length).toBeGreaterThan(1);
    for (const t of ticks) expect((t - T0) % (3 * H)).toBe(0);
  });
});
