// The runs list as it lives on the page: pages read with keyset tokens, then kept true by one
// WatchFlowRuns stream. Pure functions of (list, input) so unit tests can replay any order of
// pages and events; the page holds the list and runs the calls these functions ask for.
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { type State, StateType } from "../gen/runwire/v1/state_pb";
import { isTerminal, millisOf } from "../lib/format";

export interface LiveList {
  runs: readonly FlowRun[];
  /** Row position by run id. */
  index: ReadonlyMap<string, number>;
  /** Token of the next page; "" when every page has been read. */
  nextToken: string;
  /** Whether the first page has arrived. */
  loaded: boolean;
  /** The watch resumes after this. */
  cursor: bigint;
  /** Matching runs that appeared but are not shown (the order puts them somewhere unread). */
  pending: ReadonlySet<string>;
  /** Bumped on every change the watch brings, so counts and the chart know to refresh. */
  changes: number;
}

export interface ListRules {
  /** The states the page filters on; empty for every state. */
  states: readonly StateType[];
  /** The list is ordered by id, newest first, so new runs belong at its top. */
  newestFirst: boolean;
}

export const EMPTY_LIST: LiveList = {
  runs: [],
  index: new Map(),
  nextToken: "",
  loaded: false,
  cursor: 0n,
  pending: new Set(),
  changes: 0,
};

function indexOf(runs: readonly FlowRun[]): Map<string, number> {
  const index = new Map<string, number>();
  runs.forEach((run, i) => index.set(run.id, i));
  return index;
}

/** A page read: the first one starts the list (and fixes the watch's cursor), later ones extend it. */
export function addPage(
  list: LiveList,
  page: { flowRuns: readonly FlowRun[]; nextPageToken: string; watchCursor: bigint },
  first: boolean,
): LiveList {
  const base = first ? EMPTY_LIST : list;
  const fresh = page.flowRuns.filter((run) => !base.index.has(run.id));
  const runs = [...base.runs, ...fresh];
  const index = new Map(base.index);
  fresh.forEach((run, i) => index.set(run.id, base.runs.length + i));
  return {
    ...base,
    runs,
    index,
    nextToken: page.nextPageToken,
    loaded: true,
    cursor: first ? page.watchCursor : base.cursor,
  };
}

function stateMillis(state: State | undefined): number {
  return millisOf(state?.timestamp) ?? -Infinity;
}

/** Whether `next` is a later state than the row's `current` (equal ones are the same news). */
function isNewer(current: State | undefined, next: State): boolean {
  if (!current) return true;
  if (current.id && current.id === next.id) return false;
  return stateMillis(next) >= stateMillis(current);
}

function matchesStates(rules: ListRules, type: StateType | undefined): boolean {
  return rules.states.length === 0 || (type !== undefined && rules.states.includes(type));
}

/** A run as its new state makes it: the times the row shows follow the state. */
export function withState(run: FlowRun, state: State): FlowRun {
  const next: FlowRun = { ...run, state };
  if (state.type === StateType.RUNNING && !run.startTime) next.startTime = state.timestamp;
  if (isTerminal(state.type) && !run.endTime) next.endTime = state.timestamp;
  return next;
}

export interface EventOutcome {
  list: LiveList;
  /** Runs to read (batched): ones the list lacks that now match, and rows that finished
   * (their run time is the server's to say). */
  fetch: string[];
}

/** One state change from the watch. */
export function applyEvent(
  list: LiveList,
  event: { cursor: bigint; flowRunId: string; state: State },
  rules: ListRules,
): EventOutcome {
  if (event.cursor <= list.cursor) return { list, fetch: [] };
  const advanced = { ...list, cursor: event.cursor };
  const at = list.index.get(event.flowRunId);
  if (at !== undefined) {
    const row = list.runs[at];
    if (!isNewer(row.state, event.state)) return { list: advanced, fetch: [] };
    const runs = list.runs.slice();
    runs[at] = withState(row, event.state);
    return {
      list: { ...advanced, runs, changes: list.changes + 1 },
      fetch: isTerminal(event.state.type) ? [event.flowRunId] : [],
    };
  }
  // The watch matches everything but the state (so rows that leave the state filter still
  // update in place); a run the list lacks is news only in a state the page shows.
  if (!matchesStates(rules, event.state.type)) return { list: advanced, fetch: [] };
  return { list: { ...advanced, changes: list.changes + 1 }, fetch: [event.flowRunId] };
}

/** Runs read because the watch named them: rows are refreshed, new matching runs placed. */
export function upsertRuns(list: LiveList, fetched: readonly FlowRun[], rules: ListRules): LiveList {
  let runs: FlowRun[] | undefined;
  const added: FlowRun[] = [];
  let pending: Set<string> | undefined;
  for (const run of fetched) {
    const at = list.index.get(run.id);
    if (at !== undefined) {
      const row = (runs ?? list.runs)[at];
      if (run.state && !isNewer(row.state, run.state) && row.state?.id !== run.state.id) continue;
      runs ??= list.runs.slice();
      runs[at] = run;
    } else if (matchesStates(rules, run.state?.type)) {
      if (rules.newestFirst && placeable(list, run.id)) added.push(run);
      else if (!list.pending.has(run.id)) (pending ??= new Set(list.pending)).add(run.id);
    }
  }
  if (!runs && !added.length && !pending) return list;
  let next = runs ?? list.runs;
  let index = list.index;
  if (added.length) {
    const seen = new Set<string>();
    const unique = added.filter((r) => !seen.has(r.id) && seen.add(r.id));
    next = [...unique, ...next].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    index = indexOf(next);
  }
  return { ...list, runs: next, index, pending: pending ?? list.pending, changes: list.changes + 1 };
}

/** A run fits the newest-first list when it is newer than the last row read, or when every
 * page has been read (a run older than the last row belongs to a page not read yet). */
function placeable(list: LiveList, id: string): boolean {
  const last = list.runs[list.runs.length - 1];
  return !list.nextToken || !last || id > last.id;
}
