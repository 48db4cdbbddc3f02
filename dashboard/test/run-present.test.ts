import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { OrchestrationResultSchema, SetStateStatus } from "../src/gen/runwire/v1/orchestration_pb";
import { ResultReferenceSchema, StateSchema, StateType } from "../src/gen/runwire/v1/state_pb";
import { availableActions, describeOutcome } from "../src/run/Actions";
import { filterLogs } from "../src/run/Logs";
import { describeResult, formatBytes, formatParameters, summarizeParameters } from "../src/run/present";
import { stretches } from "../src/run/Timeline";
import { LogSchema } from "../src/gen/runwire/v1/log_pb";

describe("parameters", () => {
  it("reads as indented JSON, keys in their order", () => {
    const text = formatParameters({ date: "2026-01-02", tables: ["a", "b"], n: 3, deep: { ok: true } });
    expect(JSON.parse(text)).toEqual({ date: "2026-01-02", tables: ["a", "b"], n: 3, deep: { ok: true } });
    expect(text.split("\n")[1]).toBe('  "date": "2026-01-02",');
    expect(formatParameters({})).toBe("");
    expect(formatParameters(undefined)).toBe("");
  });

  it("summarizes by key names", () => {
    expect(summarizeParameters({ a: 1, b: 2 })).toBe("a, b");
    expect(summarizeParameters({ a: 1, b: 2, c: 3 }, 2)).toBe("a, b, +1 more");
    expect(summarizeParameters(undefined)).toBe("none");
  });
});

describe("results", () => {
  it("says where a result is, never its bytes", () => {
    const uri = create(ResultReferenceSchema, { serializer: "json", storage: { case: "locationUri", value: "s3://b/k" } });
    expect(describeResult(uri)).toEqual({ serializer: "json", where: "s3://b/k", uri: "s3://b/k" });
    const inline = create(ResultReferenceSchema, { serializer: "pickle", storage: { case: "inlineValue", value: new Uint8Array(2048) } });
    expect(describeResult(inline)).toEqual({ serializer: "pickle", where: "inline, 2.0 KiB" });
    expect(describeResult(undefined)).toBeUndefined();
    expect(describeResult(create(ResultReferenceSchema, {}))).toBeUndefined();
  });

  it("formats sizes", () => {
    expect(formatBytes(12)).toBe("12 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(50 * 1024 * 1024)).toBe("50 MiB");
  });
});

describe("actions", () => {
  it("offers what fits the state", () => {
    expect(availableActions(StateType.RUNNING)).toEqual(["cancel", "delete"]);
    expect(availableActions(StateType.PAUSED)).toEqual(["resume", "cancel", "delete"]);
    expect(availableActions(StateType.CANCELLING)).toEqual(["delete"]);
    expect(availableActions(StateType.FAILED)).toEqual(["retry", "delete"]);
    expect(availableActions(StateType.COMPLETED)).toEqual(["delete"]);
  });

  it("says a refusal as the server did", () => {
    const accept = create(OrchestrationResultSchema, { status: SetStateStatus.ACCEPT });
    expect(describeOutcome(accept)).toBeUndefined();
    const reject = create(OrchestrationResultSchema, {
      status: SetStateStatus.REJECT,
      details: { reason: "timed out" },
      stateWritten: true,
      state: { type: StateType.FAILED, name: "Failed" },
    });
    expect(describeOutcome(reject)).toBe("REJECT: timed out (the run is now Failed)");
    const abort = create(OrchestrationResultSchema, { status: SetStateStatus.ABORT, details: { reason: "terminal" } });
    expect(describeOutcome(abort)).toBe("ABORT: terminal");
  });
});

describe("timeline stretches", () => {
  const s = (id: string, type: StateType, at: number) => create(StateSchema, { id, type, timestamp: timestampFromMs(at) });
  it("runs each state until the next, and a live run's current one until now", () => {
    const parts = stretches([s("a", StateType.PENDING, 1000), s("b", StateType.RUNNING, 4000)], 10_000);
    expect(parts.map((p) => [p.start, p.end, p.open])).toEqual([
      [1000, 4000, false],
      [4000, 10_000, true],
    ]);
    const done = stretches([s("a", StateType.RUNNING, 1000), s("b", StateType.COMPLETED, 3000)], 10_000);
    expect(done[1]).toMatchObject({ start: 3000, end: 3000, open: false });
  });
});

describe("log filter", () => {
  const logs = [
    create(LogSchema, { id: "1", level: 10, message: "probe cache" }),
    create(LogSchema, { id: "2", level: 30, message: "Slow API" }),
    create(LogSchema, { id: "3", level: 40, message: "api down", name: "worker" }),
  ];
  it("keeps a level and up, and text anywhere in the message or logger, any case", () => {
    expect(filterLogs(logs, 30, "").map((l) => l.id)).toEqual(["2", "3"]);
    expect(filterLogs(logs, 0, "API").map((l) => l.id)).toEqual(["2", "3"]);
    expect(filterLogs(logs, 40, "api").map((l) => l.id)).toEqual(["3"]);
    expect(filterLogs(logs, 0, "WORKER").map((l) => l.id)).toEqual(["3"]);
    expect(filterLogs(logs, 0, "  ")).toBe(logs);
  });
});
