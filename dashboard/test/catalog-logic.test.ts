import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CollisionStrategy } from "../src/gen/runwire/v1/deployment_pb";
import { StateType } from "../src/gen/runwire/v1/state_pb";
import {
  BAD_STATES,
  Limiter,
  SLOT_HOLDING,
  collisionLabel,
  countBy,
  flowChartCriteria,
  flowCriteria,
  meterLook,
  runsHref,
  signInMessage,
  signInOutcome,
  signInStart,
  slotCriteria,
} from "../src/catalog/logic";

describe("meterLook", () => {
  it("says nothing without a limit", () => {
    expect(meterLook(3, undefined)).toMatchObject({ text: "—", level: "none", fill: 0 });
  });
  it("shows used over limit with a proportional bar", () => {
    const look = meterLook(2, 5);
    expect(look.text).toBe("2 / 5");
    expect(look.fill).toBeCloseTo(2 / 5);
    expect(look.level).toBe("ok");
    expect(look.label).toContain("2 of 5");
  });
  it("calls a limit reached full and one passed over, with the bar clamped", () => {
    expect(meterLook(5, 5).level).toBe("full");
    const over = meterLook(7, 5);
    expect(over.level).toBe("over");
    expect(over.fill).toBe(1);
    expect(over.label).toContain("over the limit");
  });
  it("handles a zero limit without dividing by it", () => {
    expect(meterLook(0, 0)).toMatchObject({ text: "0 / 0", fill: 0, level: "full" });
    expect(meterLook(1, 0)).toMatchObject({ fill: 1, level: "over" });
  });
  it("shows a placeholder while the count is unknown", () => {
    expect(meterLook(undefined, 4)).toMatchObject({ text: "… / 4", level: "ok" });
  });
});

describe("criteria", () => {
  it("selects a flow's runs, with optional time and states", () => {
    const plain = flowCriteria("f1");
    expect(plain.flowRuns?.flowId?.anyOf?.values).toEqual(["f1"]);
    expect(plain.flowRuns?.startTime).toBeUndefined();
    expect(plain.flowRuns?.state).toBeUndefined();
    const since = new Date(Date.UTC(2026, 0, 2));
    const narrow = flowCriteria("f1", { since, states: BAD_STATES });
    expect(Number(narrow.flowRuns?.startTime?.after?.seconds)).toBe(since.getTime() / 1000);
    expect(narrow.flowRuns?.state?.type?.anyOf?.values).toEqual([StateType.FAILED, StateType.CRASHED]);
  });
  it("gives the chart the flow by id", () => {
    expect(flowChartCriteria("f9").flows?.id?.anyOf?.values).toEqual(["f9"]);
  });
  it("counts slots in the server's slot-holding states", () => {
    const c = slotCriteria(["d1", "d2"]);
    expect(c.flowRuns?.deploymentId?.anyOf?.values).toEqual(["d1", "d2"]);
    expect(c.flowRuns?.state?.type?.anyOf?.values).toEqual([...SLOT_HOLDING]);
    expect(SLOT_HOLDING).toEqual([StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]);
  });
});

describe("countBy", () => {
  it("counts items per key", () => {
    const counts = countBy([{ d: "a" }, { d: "b" }, { d: "a" }], (x) => x.d);
    expect([...counts]).toEqual([
      ["a", 2],
      ["b", 1],
    ]);
  });
});

describe("runsHref", () => {
  it("links to the runs page with its parameters", () => {
    expect(runsHref({})).toBe("/runs");
    expect(runsHref({ flow: "f1" })).toBe("/runs?flow=f1");
    expect(runsHref({ deployment: "d1" })).toBe("/runs?deployment=d1");
    expect(runsHref({ flow: "f1", states: BAD_STATES, range: "7d" })).toBe("/runs?flow=f1&state=failed,crashed&range=7d");
    expect(runsHref({ tag: "a b&c" })).toBe("/runs?tag=a+b%26c");
  });
});

describe("collisionLabel", () => {
  it("names the server's default as enqueue", () => {
    expect(collisionLabel(CollisionStrategy.UNSPECIFIED)).toBe("Enqueue");
    expect(collisionLabel(CollisionStrategy.ENQUEUE)).toBe("Enqueue");
    expect(collisionLabel(CollisionStrategy.CANCEL_NEW)).toBe("Cancel new");
  });
});

describe("sign-in state", () => {
  it("tells a first visit from a kept token turned down", () => {
    expect(signInStart("")).toEqual({ kind: "first" });
    expect(signInMessage(signInStart(""))).toBeUndefined();
    expect(signInStart("rwt_old")).toEqual({ kind: "expired" });
    expect(signInMessage(signInStart("rwt_old"))?.alert).toBe(true);
  });
  it("says a refused token was not accepted, in the server's words too", () => {
    const status = signInOutcome(new ConnectError("the token is not valid on this server", Code.Unauthenticated));
    expect(status).toEqual({ kind: "rejected", detail: "the token is not valid on this server" });
    const message = signInMessage(status);
    expect(message?.text).toBe("That token was not accepted.");
    expect(message?.detail).toBe("the token is not valid on this server");
  });
  it("keeps other failures apart from a refusal", () => {
    const status = signInOutcome(new ConnectError("connection refused", Code.Unavailable));
    expect(status.kind).toBe("failed");
    expect(signInMessage(status)?.text).not.toContain("not accepted");
  });
});

describe("Limiter", () => {
  it("never runs more than its limit at once and runs every task", async () => {
    const limiter = new Limiter(2);
    let running = 0;
    let peak = 0;
    const gates: (() => void)[] = [];
    const tasks = Array.from({ length: 5 }, (_, i) =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((go) => gates.push(go));
        running--;
        return i;
      }),
    );
    const flush = () => new Promise((r) => setTimeout(r, 0));
    await flush();
    expect(limiter.active).toBe(2);
    expect(limiter.queued).toBe(3);
    // A newcomer while two run must wait too, even as one finishes.
    gates.shift()!();
    const late = limiter.run(async () => {
      running++;
      peak = Math.max(peak, running);
      running--;
      return 99;
    });
    while (gates.length || limiter.active) {
      await flush();
      gates.shift()?.();
    }
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3, 4]);
    expect(await late).toBe(99);
    expect(peak).toBe(2);
    expect(limiter.active).toBe(0);
  });
  it("frees its place when a task fails", async () => {
    const limiter = new Limiter(1);
    await expect(limiter.run(() => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect(await limiter.run(async () => "next")).toBe("next");
  });
});
