// The catalog pages' pure parts (criteria, slot maths, links, sign-in wording), kept apart
// from the components so that unit tests pin them without a browser.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { CollisionStrategy } from "../gen/runwire/v1/deployment_pb";
import { type FlowRunCriteria, FlowRunCriteriaSchema } from "../gen/runwire/v1/filters_pb";
import { StateType } from "../gen/runwire/v1/state_pb";
import { stateSlug } from "../lib/format";

/** The states in which a run holds its deployment's slot: the server's own set
 * (orchestration/deployment_slots.py, SLOT_HOLDING_FLOW_TYPES). */
export const SLOT_HOLDING: readonly StateType[] = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING];

/** The states the flows table counts as "went wrong". */
export const BAD_STATES: readonly StateType[] = [StateType.FAILED, StateType.CRASHED];

export const DAY_MS = 86_400_000;

/** A flow's runs, optionally since a time and in some states. */
export function flowCriteria(flowId: string, opts: { since?: Date; states?: readonly StateType[] } = {}): FlowRunCriteria {
  return create(FlowRunCriteriaSchema, {
    flowRuns: {
      flowId: { anyOf: { values: [flowId] } },
      ...(opts.since ? { startTime: { after: timestampFromDate(opts.since) } } : {}),
      ...(opts.states ? { state: { type: { anyOf: { values: [...opts.states] } } } } : {}),
    },
  });
}

/** The flow page's chart: every run of the flow (the chart adds its own time range). */
export function flowChartCriteria(flowId: string): FlowRunCriteria {
  return create(FlowRunCriteriaSchema, { flows: { id: { anyOf: { values: [flowId] } } } });
}

/** Runs of these deployments that hold a slot now. */
export function slotCriteria(deploymentIds: readonly string[]): FlowRunCriteria {
  return create(FlowRunCriteriaSchema, {
    flowRuns: {
      deploymentId: { anyOf: { values: [...deploymentIds] } },
      state: { type: { anyOf: { values: [...SLOT_HOLDING] } } },
    },
  });
}

/** How many of `items` carry each key. */
export function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

export interface MeterLook {
  /** What the cell says: "2 / 5", or "—" without a limit. */
  text: string;
  /** How full, 0..1, for the bar (clamped: a run forced past the limit fills it). */
  fill: number;
  /** "none" (no limit), "ok", "full" (every slot taken), "over" (more than the limit). */
  level: "none" | "ok" | "full" | "over";
  /** A sentence for assistive technology and the tooltip. */
  label: string;
}

export function meterLook(used: number | undefined, limit: number | undefined): MeterLook {
  if (limit === undefined) return { text: "—", fill: 0, level: "none", label: "no concurrency limit" };
  const n = used ?? 0;
  const shown = used === undefined ? "…" : String(n);
  const fill = limit <= 0 ? (n > 0 ? 1 : 0) : Math.min(1, n / limit);
  const level = n > limit ? "over" : n === limit ? "full" : "ok";
  const label =
    used === undefined
      ? `limit ${limit}, slots in use not known yet`
      : limit === 0
        ? `limit 0: no run may start; ${n} in use`
        : `${n} of ${limit} slots in use${level === "over" ? ", over the limit" : level === "full" ? ", full" : ""}`;
  return { text: `${shown} / ${limit}`, fill, level: used === undefined ? "ok" : level, label };
}

export function collisionLabel(strategy: CollisionStrategy): string {
  return strategy === CollisionStrategy.CANCEL_NEW ? "Cancel new" : "Enqueue";
}

export interface RunsLink {
  flow?: string;
  deployment?: string;
  states?: readonly StateType[];
  tag?: string;
  range?: "24h" | "7d" | "30d" | "all";
}

/** A link to the runs page with its filters, in the parameters that page reads. */
export function runsHref(link: RunsLink): string {
  const q = new URLSearchParams();
  if (link.flow) q.set("flow", link.flow);
  if (link.deployment) q.set("deployment", link.deployment);
  if (link.states?.length) q.set("state", link.states.map(stateSlug).join(","));
  if (link.tag) q.set("tag", link.tag);
  if (link.range) q.set("range", link.range);
  const s = q.toString().replace(/%2C/g, ",");
  return s ? `/runs?${s}` : "/runs";
}

/** Where the sign-in form stands, and what it tells the person. */
export type SignInStatus =
  | { kind: "first" }
  | { kind: "checking" }
  | { kind: "rejected"; detail: string }
  | { kind: "expired" }
  | { kind: "failed"; detail: string };

/** The outcome of trying a token: rejected (with the server's words) or another failure. */
export function signInOutcome(err: unknown): SignInStatus {
  const e = ConnectError.from(err);
  if (e.code === Code.Unauthenticated) return { kind: "rejected", detail: e.rawMessage || e.message };
  return { kind: "failed", detail: e.rawMessage || e.message };
}

/** The form's opening state: a token already kept in this tab that brought us here was turned
 * down since (expired or revoked); no token means a first visit. */
export function signInStart(keptToken: string): SignInStatus {
  return keptToken ? { kind: "expired" } : { kind: "first" };
}

export function signInMessage(status: SignInStatus): { text: string; detail?: string; alert: boolean } | undefined {
  switch (status.kind) {
    case "first":
    case "checking":
      return undefined;
    case "rejected":
      return { text: "That token was not accepted.", detail: status.detail, alert: true };
    case "expired":
      return { text: "Your token is no longer accepted (expired or revoked). Sign in again.", alert: true };
    case "failed":
      return { text: "Could not check the token.", detail: status.detail, alert: true };
  }
}

/** Runs up to `limit` tasks at once, in the order asked; the rest wait their turn. */
export class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    // A finishing task hands its place straight to the next in line, so a newcomer cannot
    // slip in between and go past the limit.
    if (this.running >= this.limit) await new Promise<void>((go) => this.waiting.push(go));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }
}
