// The runs list as it lives on the page: pages read with keyset tokens, then kept true by one
// WatchFlowRuns stream. Pure functions of (list, input) so unit tests can replay any order of
// pages and events; the page holds the list and runs the calls these functions ask for.
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { type State, StateType } from "../gen/runwire/v1/state_pb";
import { isTerminal, millisOf } from "../lib/format";
import { advanceRun } from "../lib/runState";

/** How many runs not (yet) loaded the list remembers the latest event of. */
export const EARLY_MAX = 1000;

export interface EarlyEvent {
  cursor: bigint;
  state: State;
}

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
  /** Matching runs created since the list was read that its order puts somewhere unread
   * (orders other than newest-first): the page offers to show them. */
  pending: ReadonlySet<string>;
  /** Bumped on every change the watch brings, so counts and the chart know to refresh. */
  changes: number;
  /** The latest event of each run the list has not loaded (a page in flight or not read yet
   * may carry an older state): applied when the run arrives. At most EARLY_MAX, oldest dropped. */
  early: ReadonlyMap<string, EarlyEvent>;
  /** The greatest run id when the list was read, where the order does not say it: a run with
   * a greater id was created since. Undefined: every run the list lacks counts as new. */
  horizon?: string;
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
  early: new Map(),
};

/** Whether two lists show the same thing (they may differ in cursor and remembered events):
 * the page re-renders only when they do not. */
export function sameView(a: LiveList, b: LiveList): boolean {
  return (
    a.runs === b.runs &&
    a.pending === b.pending &&
    a.changes === b.changes &&
    a.loaded === b.loaded &&
    a.nextToken === b.nextToken
  );
}

function indexOf(runs: readonly FlowRun[]): Map<string, number> {
  const index = new Map<string, number>();
  runs.forEach((run, i) => index.set(run.id, i));
  return index;
}

/** Runs arriving in the list: each with its remembered event applied when that is newer than
 * what it was read with (`readAt`: the read's watch cursor; undefined compares states' times),
 * and dropped from the remembered events and from pending. */
function arrive(
  list: LiveList,
  fresh: readonly FlowRun[],
  readAt: bigint | undefined,
): { runs: FlowRun[]; early: ReadonlyMap<string, EarlyEvent>; pending: ReadonlySet<string> } {
  let early: Map<string, EarlyEvent> | undefined;
  let pending: Set<string> | undefined;
  const runs = fresh.map((run) => {
    if (list.pending.has(run.id)) (pending ??= new Set(list.pending)).delete(run.id);
    const seen = list.early.get(run.id);
    if (!seen) return run;
    (early ??= new Map(list.early)).delete(run.id);
    const later = readAt !== undefined ? seen.cursor > readAt : isNewer(run.state, seen.state);
    return later ? withState(run, seen.state) : run;
  });
  return { runs, early: early ?? list.early, pending: pending ?? list.pending };
}

/** A page read: the first one starts the list (and fixes the watch's cursor), later ones extend it. */
export function addPage(
  list: LiveList,
  page: { flowRuns: readonly FlowRun[]; nextPageToken: string; watchCursor: bigint },
  first: boolean,
  horizon?: string,
): LiveList {
  const base = first ? { ...EMPTY_LIST, horizon } : list;
  const fresh = page.flowRuns.filter((run) => !base.index.has(run.id));
  const arrived = arrive(base, fresh, page.watchCursor);
  const runs = [...base.runs, ...arrived.runs];
  const index = new Map(base.index);
  fresh.forEach((run, i) => index.set(run.id, base.runs.length + i));
  return {
    ...base,
    runs,
    index,
    early: arrived.early,
    pending: arrived.pending,
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

/** A run as its new state makes it: the times the row shows follow the state, as the
 * server's bookkeeping (and the run page) advance them. */
export function withState(run: FlowRun, state: State): FlowRun {
  return advanceRun(run, state);
}

/** Whether a run the list lacks was created after the list was read (ids are UUIDv7: a later
 * run has a greater id). Only for orders other than newest-first, whose rows do not say it. */
function isNew(list: LiveList, id: string): boolean {
  return list.horizon === undefined || id > list.horizon;
}

/** Whether the newest-first list has room for a run it lacks: newer than the last row read,
 * or every page read (a run older than the last row belongs to a page not read yet). */
function placeable(list: LiveList, id: string): boolean {
  const last = list.runs[list.runs.length - 1];
  return !list.nextToken || !last || id > last.id;
}

/** Whether the list should read a run it lacks to show it: a newest-first list places it (a
 * run for an unread page waits for that page); other orders offer new runs only. */
function wanted(list: LiveList, id: string, rules: ListRules): boolean {
  return rules.newestFirst ? placeable(list, id) : isNew(list, id);
}

function remember(early: ReadonlyMap<string, EarlyEvent>, id: string, event: EarlyEvent): ReadonlyMap<string, EarlyEvent> {
  const seen = early.get(id);
  if (seen && seen.cursor >= event.cursor) return early;
  const next = new Map(early);
  next.delete(id); // re-inserted last: the map's order is the order events came in
  next.set(id, event);
  while (next.size > EARLY_MAX) next.delete(next.keys().next().value as string);
  return next;
}

export interface EventOutcome {
  list: LiveList;
  /** Runs to read (batched): ones the list lacks that now match, and rows that finished
   * (their run time is the server's to say). */
  fetch: string[];
}

/** One state change from the watch. A change that alters nothing shown returns a list that
 * `sameView`s the old one (only the cursor, and what is remembered, move on). */
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
  // A run not loaded: its page (in flight, or not read yet) may carry an older state.
  advanced.early = remember(list.early, event.flowRunId, { cursor: event.cursor, state: event.state });
  // The watch matches everything but the state (so rows that leave the state filter still
  // update in place); a run the list lacks is news only in a state the page shows.
  if (!matchesStates(rules, event.state.type)) {
    if (list.pending.has(event.flowRunId)) {
      const pending = new Set(list.pending);
      pending.delete(event.flowRunId);
      return { list: { ...advanced, pending, changes: list.changes + 1 }, fetch: [] };
    }
    return { list: advanced, fetch: [] };
  }
  return {
    list: { ...advanced, changes: list.changes + 1 },
    fetch: wanted(list, event.flowRunId, rules) ? [event.flowRunId] : [],
  };
}

/** Runs read because the watch named them: rows are refreshed, new matching runs placed.
 * `readAt` is the read's watch cursor, when known. */
export function upsertRuns(list: LiveList, fetched: readonly FlowRun[], rules: ListRules, readAt?: bigint): LiveList {
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
      if (rules.newestFirst) {
        if (placeable(list, run.id)) added.push(run);
        // Otherwise its page brings it, and the remembered event brings it up to date.
      } else if (isNew(list, run.id) && !list.pending.has(run.id)) {
        (pending ??= new Set(list.pending)).add(run.id);
      }
    }
  }
  if (!runs && !added.length && !pending) return list;
  let next = runs ?? list.runs;
  let index = list.index;
  let early = list.early;
  if (added.length) {
    const seen = new Set<string>();
    const unique = added.filter((r) => !seen.has(r.id) && seen.add(r.id));
    const arrived = arrive(list, unique, readAt);
    early = arrived.early;
    next = [...arrived.runs, ...next].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    index = indexOf(next);
  }
  return { ...list, runs: next, index, early, pending: pending ?? list.pending, changes: list.changes + 1 };
}
