import { FlowRunSort } from "../src/gen/runwire/v1/filters_pb";
import { StateType } from "../src/gen/runwire/v1/state_pb";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_RANGE,
  EMPTY_QUERY,
  formatQuery,
  isFiltered,
  newestFirst,
  parseQuery,
  rangeStart,
  sortOf,
  toCriteria,
  withIds,
  withState,
} from "../src/runs/query";

const NOW = Date.UTC(2026, 11, 3, 12, 0, 0);

describe("parseQuery / formatQuery", () => {
  it("reads every filter the URL contract names", () => {
    const q = parseQuery("?flow=f1&deployment=d1&state=failed,crashed&tag=a&tag=b&range=24h&q=etl&sort=name-asc");
    expect(q).toEqual({
      flow: "f1",
      deployment: "d1",
      states: [StateType.FAILED, StateType.CRASHED],
      tags: ["a", "b"],
      range: "24h",
      q: "etl",
      sort: "name-asc",
    });
  });

  it("round-trips a query through its URL", () => {
    const q = { ...EMPTY_QUERY, flow: "f", states: [StateType.RUNNING, StateType.FAILED], tags: ["x y", "z&"], q: "a b" };
    expect(parseQuery(formatQuery(q))).toEqual(q);
  });

  it("leaves defaults out of the URL", () => {
    expect(formatQuery(EMPTY_QUERY)).toBe("");
    expect(formatQuery({ ...EMPTY_QUERY, range: DEFAULT_RANGE })).toBe("");
    expect(parseQuery("")).toEqual(EMPTY_QUERY);
  });

  it("writes states in the dashboard's order, once each", () => {
    const q = parseQuery("?state=failed&state=running,failed");
    expect(q.states).toEqual([StateType.RUNNING, StateType.FAILED]);
    expect(formatQuery(q)).toBe("?state=running%2Cfailed");
  });

  it("falls back to defaults for values that are not ours", () => {
    const q = parseQuery("?state=nope,FAILED&range=3y&sort=random&tag=&tag=a&tag=a");
    expect(q.states).toEqual([StateType.FAILED]);
    expect(q.range).toBe(DEFAULT_RANGE);
    expect(q.sort).toBe(EMPTY_QUERY.sort);
    expect(q.tags).toEqual(["a"]);
  });

  it("knows when a query filters (the sort alone does not)", () => {
    expect(isFiltered(EMPTY_QUERY)).toBe(false);
    expect(isFiltered({ ...EMPTY_QUERY, sort: "oldest" })).toBe(false);
    expect(isFiltered({ ...EMPTY_QUERY, range: "all" })).toBe(true);
  });
});

describe("toCriteria", () => {
  it("asks for nothing when nothing is chosen over all time", () => {
    const c = toCriteria({ ...EMPTY_QUERY, range: "all" }, NOW);
    expect(c.flowRuns).toBeUndefined();
  });

  it("maps each filter to its criterion", () => {
    const q = parseQuery("?flow=f1&deployment=d1&state=failed&tag=a&tag=b&range=1h&q=Etl");
    const runs = toCriteria(q, NOW).flowRuns!;
    expect(runs.flowId?.anyOf?.values).toEqual(["f1"]);
    expect(runs.deploymentId?.anyOf?.values).toEqual(["d1"]);
    expect(runs.state?.type?.anyOf?.values).toEqual([StateType.FAILED]);
    expect(runs.tags?.allOf?.values).toEqual(["a", "b"]);
    expect(runs.name?.like).toBe("Etl");
    expect(timestampDate(runs.startTime!.after!).getTime()).toBe(NOW - 3600_000);
  });

  it("leaves out the parts a caller adds itself", () => {
    const q = parseQuery("?state=failed&range=24h&q=x");
    const runs = toCriteria(q, NOW, { withoutStates: true, withoutRange: true }).flowRuns!;
    expect(runs.state).toBeUndefined();
    expect(runs.startTime).toBeUndefined();
    expect(runs.name?.like).toBe("x");
  });

  it("narrows to a state or to ids without touching the original", () => {
    const base = toCriteria(parseQuery("?q=x&state=failed"), NOW);
    const one = withState(base, StateType.RUNNING);
    expect(one.flowRuns?.state?.type?.anyOf?.values).toEqual([StateType.RUNNING]);
    expect(one.flowRuns?.name?.like).toBe("x");
    expect(base.flowRuns?.state?.type?.anyOf?.values).toEqual([StateType.FAILED]);
    const some = withIds(toCriteria({ ...EMPTY_QUERY, range: "all" }, NOW), ["a", "b"]);
    expect(some.flowRuns?.id?.anyOf?.values).toEqual(["a", "b"]);
  });

  it("ranges start where the key says", () => {
    expect(rangeStart("all", NOW)).toBeUndefined();
    expect(rangeStart("7d", NOW)?.getTime()).toBe(NOW - 7 * 86400_000);
  });

  it("sorts newest first unless told otherwise", () => {
    expect(sortOf(EMPTY_QUERY)).toBe(FlowRunSort.ID_DESC);
    expect(newestFirst(EMPTY_QUERY)).toBe(true);
    expect(sortOf(parseQuery("?sort=start-desc"))).toBe(FlowRunSort.START_TIME_DESC);
    expect(newestFirst(parseQuery("?sort=start-desc"))).toBe(false);
  });
});
