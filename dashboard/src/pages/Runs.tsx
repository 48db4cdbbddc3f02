// The front page: every run that matches the URL's filter, live. The first page of rows is
// read before anything else (counts, chart, names follow), so rows show first.
import { useLocation } from "preact-iso";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import { HistoryChart } from "../components/HistoryChart";
import { StateBadge } from "../components/StateBadge";
import type { Deployment } from "../gen/runwire/v1/deployment_pb";
import { FlowSort } from "../gen/runwire/v1/filters_pb";
import type { Flow } from "../gen/runwire/v1/flow_pb";
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { StateType } from "../gen/runwire/v1/state_pb";
import { STATE_ORDER, formatDuration, formatRelative, formatTime, millisOf, runDuration } from "../lib/format";
import { useNow } from "../runs/clock";
import { FilterBar } from "../runs/FilterBar";
import type { LiveList } from "../runs/liveList";
import { type LiveStatus, useLiveRuns } from "../runs/useLiveRuns";
import { rememberDeployments, rememberFlows, resolveNames, useNames } from "../runs/names";
import {
  EMPTY_QUERY,
  type RunsQuery,
  formatQuery,
  isFiltered,
  newestFirst,
  parseQuery,
  rangeStart,
  sortOf,
  toCriteria,
  withState,
} from "../runs/query";
import { StateCounts } from "../runs/StateCounts";
import { VirtualRows } from "../runs/VirtualRows";
import "../runs/runs.css";

const ROW_HEIGHT = 34;
/** The chart of "all time" shows the last month: older bars would be too thin to read. */
const ALL_TIME_CHART_DAYS = 30;
const REFRESH_MS = 5000;

let markedRendered = false;

export function Runs() {
  const { url, route } = useLocation();
  const search = url.includes("?") ? url.slice(url.indexOf("?")) : "";
  const query = useMemo(() => parseQuery(search), [search]);
  const key = formatQuery(query);
  const [since] = useState(() => ({ key, at: Date.now() }));
  // The range starts where it did when this filter was chosen (the keyset pages need the
  // same criteria on every call).
  const now = useMemo(() => (since.key === key ? since.at : Date.now()), [key, since]);
  const criteria = useMemo(() => toCriteria(query, now), [key, now]);
  const watchCriteria = useMemo(() => toCriteria(query, now, { withoutStates: true }), [key, now]);
  const rules = useMemo(() => ({ states: query.states, newestFirst: newestFirst(query) }), [key]);
  const live = useLiveRuns(key, criteria, watchCriteria, sortOf(query), rules);
  const { list } = live;

  const navigate = useCallback(
    (next: RunsQuery, replace = false) => {
      const target = `/runs${formatQuery(next)}`;
      if (target !== location.pathname + location.search) route(target, replace);
    },
    [route],
  );

  useEffect(() => {
    document.title = "Runs · Runwire";
  }, []);
  useLayoutEffect(() => {
    if (list.loaded && !markedRendered) {
      markedRendered = true;
      performance.mark("runwire:runs-rendered");
    }
  }, [list.loaded]);

  // What follows the rows is asked for once they are in, and again (throttled) when the
  // watch brings changes.
  const pulse = useThrottled(list.changes, REFRESH_MS);
  const counts = useCounts(key, query, now, pulse, list.loaded);
  const { flows, deployments } = usePickers(list.loaded);
  const names = useNames();
  useEffect(() => {
    if (!list.loaded || !flows) return;
    void resolveNames(
      list.runs.map((r) => r.flowId),
      list.runs.map((r) => r.deploymentId),
    );
  }, [list.runs, list.loaded, flows]);

  // The keyboard's row is a run, not a position: runs arriving at the top move it down.
  const [activeId, setActiveId] = useState<string | undefined>(undefined);
  useEffect(() => setActiveId(undefined), [key]);
  const active = activeId === undefined ? -1 : (list.index.get(activeId) ?? -1);
  const runsRef = useRef(list);
  runsRef.current = list;
  useRowKeys(runsRef, activeId, setActiveId, route);

  const chartEnd = useMemo(() => new Date(), [pulse, key]);
  const chartStart = useMemo(
    () => rangeStart(query.range, chartEnd.getTime()) ?? new Date(chartEnd.getTime() - ALL_TIME_CHART_DAYS * 86400_000),
    [chartEnd, query.range],
  );
  const chartCriteria = useMemo(() => toCriteria(query, now, { withoutRange: true }), [key, now]);

  const toggleState = (state: StateType) => {
    const states = query.states.includes(state) ? query.states.filter((s) => s !== state) : [...query.states, state];
    navigate({ ...query, states });
  };

  const row = (run: FlowRun, index: number, isActive: boolean) => (
    <tr
      key={run.id}
      data-testid="run-row"
      data-run-id={run.id}
      aria-rowindex={index + 2}
      aria-current={isActive ? "true" : undefined}
      class={isActive ? "active" : undefined}
      // One tab stop for the whole table (the keyboard's row); j/k and the arrows move within.
      tabIndex={isActive || (active < 0 && index === 0) ? 0 : -1}
      onFocus={() => isActive || setActiveId(run.id)}
      onClick={(e) => {
        setActiveId(run.id);
        const target = e.target as HTMLElement;
        if (target.closest("a, button") || getSelection()?.toString()) return;
        route(`/runs/${run.id}`);
      }}
    >
      <td class="col-name">
        <a href={`/runs/${run.id}`} tabIndex={-1}>
          {run.name}
        </a>
      </td>
      <td class="col-flow">
        {names.flows.get(run.flowId) ?? <span class="muted mono" title={run.flowId}>{run.flowId.slice(0, 8)}</span>}
      </td>
      <td class="col-state">
        <StateBadge type={run.state?.type} name={run.state?.name} />
      </td>
      <td class="col-start">
        <StartTime run={run} />
      </td>
      <td class="col-duration num">
        <Duration run={run} />
      </td>
      <td class="col-tags">
        {run.tags.map((t) => (
          <span key={t} class="tag">
            {t}
          </span>
        ))}
      </td>
      <td class="col-deployment">
        {run.deploymentId ? (
          (names.deployments.get(run.deploymentId) ?? <span class="muted mono">{run.deploymentId.slice(0, 8)}</span>)
        ) : (
          <span class="muted" aria-label="none">—</span>
        )}
      </td>
    </tr>
  );

  const head = (
    <>
      <colgroup>
        <col class="col-name" />
        <col class="col-flow" />
        <col class="col-state" />
        <col class="col-start" />
        <col class="col-duration" />
        <col class="col-tags" />
        <col class="col-deployment" />
      </colgroup>
      <thead>
        <tr aria-rowindex={1}>
          <th scope="col">Run</th>
          <th scope="col">Flow</th>
          <th scope="col">State</th>
          <th scope="col">Start</th>
          <th scope="col" class="num">
            Duration
          </th>
          <th scope="col">Tags</th>
          <th scope="col">Deployment</th>
        </tr>
      </thead>
    </>
  );

  const filtered = isFiltered(query);
  return (
    <section class="runs-page" aria-labelledby="runs-title">
      <header class="runs-head">
        <h1 id="runs-title">Runs</h1>
        <span class="runs-total muted" data-testid="runs-total" aria-live="polite">
          {counts.total === undefined ? "" : `${counts.total.toLocaleString()} run${counts.total === 1 ? "" : "s"}`}
        </span>
        <LiveBadge status={list.loaded ? live.status : "connecting"} />
      </header>
      <FilterBar query={query} flows={flows ?? []} deployments={deployments ?? []} onChange={navigate} />
      <div class="runs-overview">
        <StateCounts counts={counts.byState} selected={query.states} onToggle={toggleState} />
        {list.loaded || live.error ? (
          <HistoryChart criteria={chartCriteria} start={chartStart} end={chartEnd} version={pulse} throttleMs={0} />
        ) : (
          <div class="history history-placeholder" aria-hidden="true" />
        )}
      </div>
      {live.error !== undefined && <ErrorBox error={live.error} onRetry={live.reload} />}
      {list.pending.size > 0 && (
        <button type="button" class="new-runs" data-testid="new-runs" onClick={live.reload}>
          {list.pending.size} new run{list.pending.size === 1 ? "" : "s"} — show
        </button>
      )}
      {list.loaded && list.runs.length === 0 ? (
        <div class="empty runs-empty" data-testid="runs-empty">
          {filtered ? (
            <>
              <p>No runs match these filters.</p>
              <a href={`/runs${formatQuery({ ...EMPTY_QUERY, sort: query.sort })}`}>Clear filters</a>
            </>
          ) : (
            <p>No runs yet. Runs appear here as soon as a client creates them.</p>
          )}
        </div>
      ) : (
        <VirtualRows
          items={list.runs}
          total={list.nextToken ? counts.total : list.runs.length}
          rowHeight={ROW_HEIGHT}
          columns={7}
          head={head}
          row={row}
          active={active}
          onNearEnd={live.loadMore}
          label="Flow runs"
          class={list.loaded ? "" : "loading"}
        />
      )}
      {live.moreError !== undefined && <ErrorBox error={live.moreError} onRetry={live.loadMore} />}
    </section>
  );
}

function LiveBadge({ status }: { status: LiveStatus }) {
  const text = status === "live" ? "Live" : status === "reconnecting" ? "Reconnecting…" : "Connecting…";
  return (
    <span
      class={`live live-${status}`}
      role="status"
      data-testid="live-status"
      data-status={status}
      title={status === "live" ? "Changes appear as they happen" : "Changes will appear once the stream is back"}
    >
      <span class="live-dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function StartTime({ run }: { run: FlowRun }) {
  const millis = millisOf(run.startTime) ?? millisOf(run.expectedStartTime);
  const now = useNow(millis !== undefined);
  if (millis === undefined) return <span class="muted">—</span>;
  const expected = !run.startTime;
  return (
    <time dateTime={new Date(millis).toISOString()} title={`${expected ? "Expected " : ""}${formatTime(millis)}`} class={expected ? "muted" : undefined}>
      {formatRelative(millis, now)}
    </time>
  );
}

function Duration({ run }: { run: FlowRun }) {
  const running = run.state?.type === StateType.RUNNING;
  const now = useNow(running);
  const seconds = runDuration(run, now);
  if (seconds === undefined) return <span class="muted">—</span>;
  return <span class={running ? "ticking" : undefined}>{formatDuration(seconds)}</span>;
}

/** `value`, changing at most once per `ms` (the last change always comes through). */
function useThrottled<T>(value: T, ms: number): T {
  const [shown, setShown] = useState(value);
  const last = useRef(0);
  useEffect(() => {
    if (Object.is(value, shown)) return;
    const t = setTimeout(
      () => {
        last.current = Date.now();
        setShown(value);
      },
      Math.max(0, last.current + ms - Date.now()),
    );
    return () => clearTimeout(t);
  }, [value, shown, ms]);
  return shown;
}

interface Counts {
  total?: number;
  byState?: ReadonlyMap<StateType, number>;
}

/** The total with the page's filter, and per state with the filter's other criteria: one
 * CountFlowRuns each, in parallel (a count is an index scan; the history would be coarser and
 * key on another time). */
function useCounts(key: string, query: RunsQuery, now: number, pulse: number, ready: boolean): Counts {
  const [counts, setCounts] = useState<Counts>({});
  useEffect(() => setCounts({}), [key]);
  useEffect(() => {
    if (!ready) return;
    const abort = new AbortController();
    const opts = { signal: abort.signal };
    const all = toCriteria(query, now);
    const base = toCriteria(query, now, { withoutStates: true });
    Promise.all([
      api.flowRuns.countFlowRuns({ filter: all }, opts),
      ...STATE_ORDER.map((s) => api.flowRuns.countFlowRuns({ filter: withState(base, s) }, opts)),
    ]).then(
      ([total, ...each]) => {
        setCounts({
          total: Number(total.count),
          byState: new Map(STATE_ORDER.map((s, i) => [s, Number(each[i].count)])),
        });
      },
      () => undefined, // counts are an aid; the rows stand without them
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, now, pulse, ready]);
  return counts;
}

/** The flows and deployments the filter's selects offer (their names also label the rows). */
function usePickers(ready: boolean): { flows?: Flow[]; deployments?: Deployment[] } {
  const [value, setValue] = useState<{ flows?: Flow[]; deployments?: Deployment[] }>({});
  useEffect(() => {
    if (!ready || value.flows) return;
    Promise.allSettled([
      api.flows.listFlows({ sort: FlowSort.NAME_ASC, pageSize: 200 }),
      api.deployments.listDeployments({ pageSize: 200 }),
    ]).then(([f, d]) => {
      const flows = f.status === "fulfilled" ? f.value.flows : [];
      const deployments = d.status === "fulfilled" ? d.value.deployments : [];
      rememberFlows(flows);
      rememberDeployments(deployments);
      setValue({ flows, deployments });
    });
  }, [ready, value.flows]);
  return value;
}

/** j/k anywhere (but in a field), or the arrows and Home/End within the runs table, move the
 * keyboard's row; Enter opens it. Outside the table the arrows and Home/End scroll the page. */
function useRowKeys(
  list: { current: LiveList },
  activeId: string | undefined,
  setActiveId: (id: string | undefined) => void,
  route: (url: string) => void,
) {
  const activeRef = useRef(activeId);
  activeRef.current = activeId;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const target = e.target as HTMLElement | null;
      if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
      const { runs, index } = list.current;
      const n = runs.length;
      if (!n) return;
      const inTable = !!target?.closest?.("[data-testid=runs-scroller]");
      const current = activeRef.current === undefined ? -1 : (index.get(activeRef.current) ?? -1);
      const move = (to: number) => {
        e.preventDefault();
        const run = runs[Math.max(0, Math.min(n - 1, to))];
        activeRef.current = run.id;
        setActiveId(run.id);
      };
      switch (e.key) {
        case "j":
          return move(current + 1);
        case "k":
          return move(current < 0 ? 0 : current - 1);
        case "ArrowDown":
          return inTable ? move(current + 1) : undefined;
        case "ArrowUp":
          return inTable ? move(current < 0 ? 0 : current - 1) : undefined;
        case "Home":
          return inTable ? move(0) : undefined;
        case "End":
          return inTable ? move(n - 1) : undefined;
        case "Enter": {
          // Links and buttons keep their own Enter.
          if (target?.closest("a, button")) return;
          const id = activeRef.current;
          if (id !== undefined && index.has(id)) {
            e.preventDefault();
            route(`/runs/${id}`);
          }
        }
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, [list, setActiveId, route]);
}
