// The runs page's filter, three ways: the URL people share and bookmark (the flow and
// deployment pages link into it), the page's state, and the FlowRunCriteria the API takes.
// Pure functions, so unit tests pin every round trip.
import { type MessageInitShape, clone, create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type FlowRunCriteria,
  FlowRunCriteriaSchema,
  type FlowRunFilter,
  FlowRunFilterSchema,
  FlowRunSort,
  StateFilterSchema,
  StateTypeFilterSchema,
  StateTypeListSchema,
  StringFilterSchema,
  StringListSchema,
  TagsFilterSchema,
  TimeFilterSchema,
} from "../gen/runwire/v1/filters_pb";
import type { StateType } from "../gen/runwire/v1/state_pb";
import { STATE_ORDER, stateFromSlug, stateSlug } from "../lib/format";

export const RANGES = ["1h", "24h", "7d", "30d", "all"] as const;
export type RangeKey = (typeof RANGES)[number];

/** A week: long enough to hold last weekend's failures, short enough that a server with
 * millions of runs answers the first page from its start-time index. */
export const DEFAULT_RANGE: RangeKey = "7d";

const RANGE_SECONDS: Record<Exclude<RangeKey, "all">, number> = {
  "1h": 3600,
  "24h": 86400,
  "7d": 7 * 86400,
  "30d": 30 * 86400,
};

export const RANGE_LABELS: Record<RangeKey, string> = {
  "1h": "Past hour",
  "24h": "Past 24 hours",
  "7d": "Past 7 days",
  "30d": "Past 30 days",
  all: "All time",
};

/** The orders the page offers, by their URL names; the first is the default. */
export const SORTS: readonly { key: string; sort: FlowRunSort; label: string }[] = [
  { key: "newest", sort: FlowRunSort.ID_DESC, label: "Newest first" },
  { key: "oldest", sort: FlowRunSort.ID_ASC, label: "Oldest first" },
  { key: "start-desc", sort: FlowRunSort.START_TIME_DESC, label: "Latest start" },
  { key: "start-asc", sort: FlowRunSort.START_TIME_ASC, label: "Earliest start" },
  { key: "end-desc", sort: FlowRunSort.END_TIME_DESC, label: "Latest end" },
  { key: "name-asc", sort: FlowRunSort.NAME_ASC, label: "Name A–Z" },
  { key: "name-desc", sort: FlowRunSort.NAME_DESC, label: "Name Z–A" },
];
export const DEFAULT_SORT = SORTS[0].key;

export interface RunsQuery {
  flow: string;
  deployment: string;
  /** In STATE_ORDER, without repeats; empty means every state. */
  states: StateType[];
  /** Runs carry every one of these. */
  tags: string[];
  range: RangeKey;
  /** Part of the run's name, any case. */
  q: string;
  sort: string;
}

export const EMPTY_QUERY: RunsQuery = {
  flow: "",
  deployment: "",
  states: [],
  tags: [],
  range: DEFAULT_RANGE,
  q: "",
  sort: DEFAULT_SORT,
};

function normalStates(states: Iterable<StateType>): StateType[] {
  const set = new Set(states);
  return STATE_ORDER.filter((s) => set.has(s));
}

/** The query a URL's search part says; what it does not say (or says wrongly) is the default. */
export function parseQuery(search: string | URLSearchParams): RunsQuery {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const states: StateType[] = [];
  for (const value of params.getAll("state")) {
    for (const slug of value.split(",")) {
      const type = stateFromSlug(slug.trim());
      if (type !== undefined) states.push(type);
    }
  }
  const tags = [...new Set(params.getAll("tag").map((t) => t.trim()).filter(Boolean))];
  const range = params.get("range") as RangeKey | null;
  const sort = params.get("sort");
  return {
    flow: params.get("flow")?.trim() ?? "",
    deployment: params.get("deployment")?.trim() ?? "",
    states: normalStates(states),
    tags,
    range: range && RANGES.includes(range) ? range : DEFAULT_RANGE,
    q: params.get("q")?.trim() ?? "",
    sort: sort && SORTS.some((s) => s.key === sort) ? sort : DEFAULT_SORT,
  };
}

/** The URL's search part for a query ("" for the defaults), defaults left out so links stay short. */
export function formatQuery(query: RunsQuery): string {
  const params = new URLSearchParams();
  if (query.flow) params.set("flow", query.flow);
  if (query.deployment) params.set("deployment", query.deployment);
  if (query.states.length) params.set("state", normalStates(query.states).map(stateSlug).join(","));
  for (const tag of query.tags) params.append("tag", tag);
  if (query.range !== DEFAULT_RANGE) params.set("range", query.range);
  if (query.q) params.set("q", query.q);
  if (query.sort !== DEFAULT_SORT) params.set("sort", query.sort);
  const text = params.toString();
  return text ? `?${text}` : "";
}

export function sortOf(query: RunsQuery): FlowRunSort {
  return (SORTS.find((s) => s.key === query.sort) ?? SORTS[0]).sort;
}

/** Whether runs new to the server belong at the top of the list in this order. */
export function newestFirst(query: RunsQuery): boolean {
  return sortOf(query) === FlowRunSort.ID_DESC;
}

/** Start of the query's time range, or undefined for all time. */
export function rangeStart(range: RangeKey, now: number): Date | undefined {
  return range === "all" ? undefined : new Date(now - RANGE_SECONDS[range] * 1000);
}

export function isFiltered(query: RunsQuery): boolean {
  return formatQuery({ ...query, sort: DEFAULT_SORT }) !== "";
}

export interface CriteriaParts {
  /** Leave the state criterion out (the per-state counts and the watch add their own). */
  withoutStates?: boolean;
  /** Leave the time range out (the history chart covers its own range). */
  withoutRange?: boolean;
}

/** The API's criteria for a query; `now` fixes where the time range starts. */
export function toCriteria(query: RunsQuery, now: number, parts: CriteriaParts = {}): FlowRunCriteria {
  const runs: MessageInitShape<typeof FlowRunFilterSchema> & Partial<FlowRunFilter> = {};
  if (query.flow) runs.flowId = create(StringFilterSchema, { anyOf: create(StringListSchema, { values: [query.flow] }) });
  if (query.deployment) {
    runs.deploymentId = create(StringFilterSchema, {
      anyOf: create(StringListSchema, { values: [query.deployment] }),
    });
  }
  if (query.q) runs.name = create(StringFilterSchema, { like: query.q });
  if (query.tags.length) runs.tags = create(TagsFilterSchema, { allOf: create(StringListSchema, { values: query.tags }) });
  if (query.states.length && !parts.withoutStates) runs.state = stateCriterion(query.states);
  const start = parts.withoutRange ? undefined : rangeStart(query.range, now);
  if (start) runs.startTime = create(TimeFilterSchema, { after: timestampFromDate(start) });
  const empty = Object.keys(runs).length === 0;
  return create(FlowRunCriteriaSchema, empty ? {} : { flowRuns: create(FlowRunFilterSchema, runs) });
}

export function stateCriterion(states: readonly StateType[]) {
  return create(StateFilterSchema, {
    type: create(StateTypeFilterSchema, { anyOf: create(StateTypeListSchema, { values: [...states] }) }),
  });
}

/** The criteria narrowed to one state (for its count). */
export function withState(criteria: FlowRunCriteria, state: StateType): FlowRunCriteria {
  const next = clone(FlowRunCriteriaSchema, criteria);
  next.flowRuns ??= create(FlowRunFilterSchema);
  next.flowRuns.state = stateCriterion([state]);
  return next;
}

/** The criteria narrowed to some runs by id (to fetch runs a watch names, in one call). */
export function withIds(criteria: FlowRunCriteria, ids: readonly string[]): FlowRunCriteria {
  const next = clone(FlowRunCriteriaSchema, criteria);
  next.flowRuns ??= create(FlowRunFilterSchema);
  next.flowRuns.id = create(StringFilterSchema, { anyOf: create(StringListSchema, { values: [...ids] }) });
  return next;
}
