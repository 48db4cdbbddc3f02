// A flow's last run and its recent counts, for the flows table. Asked per row once the row is
// on screen, a few rows at a time, and kept for a minute: a page of 50 flows costs at most
// three small calls per flow actually seen, never a burst of all of them at once.
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { FlowRunSort } from "../gen/runwire/v1/filters_pb";
import { api } from "../api";
import { BAD_STATES, DAY_MS, Limiter, flowCriteria } from "./logic";

export interface FlowStats {
  last: FlowRun | undefined;
  week: number;
  bad: number;
}

const KEEP_MS = 60_000;
const limiter = new Limiter(4);
const cache = new Map<string, { at: number; stats: Promise<FlowStats> }>();

export function flowStats(flowId: string, now: number = Date.now()): Promise<FlowStats> {
  const kept = cache.get(flowId);
  if (kept && now - kept.at < KEEP_MS) return kept.stats;
  const since = new Date(now - 7 * DAY_MS);
  const stats = limiter.run(async () => {
    const [last, week, bad] = await Promise.all([
      api.flowRuns.listFlowRuns({ filter: flowCriteria(flowId), sort: FlowRunSort.ID_DESC, pageSize: 1 }),
      api.flowRuns.countFlowRuns({ filter: flowCriteria(flowId, { since }) }),
      api.flowRuns.countFlowRuns({ filter: flowCriteria(flowId, { since, states: BAD_STATES }) }),
    ]);
    return { last: last.flowRuns[0], week: Number(week.count), bad: Number(bad.count) };
  });
  cache.set(flowId, { at: now, stats });
  stats.catch(() => cache.delete(flowId));
  return stats;
}
