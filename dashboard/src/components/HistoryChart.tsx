import type { FlowRunCriteria } from "../gen/runwire/v1/filters_pb";

export interface HistoryChartProps {
  /** Which runs to count (the page's filter, without its time range). */
  criteria: FlowRunCriteria | undefined;
  /** The range the bars cover. */
  start: Date;
  end: Date;
}

/** Runs over time, one bar per interval stacked by state, from GetFlowRunHistory. */
export function HistoryChart(_props: HistoryChartProps) {
  return null;
}
