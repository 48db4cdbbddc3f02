// Hand-written SVG rather than a chart library: a stacked bar chart is a few rects, stays
// accessible (a summary for screen readers, a <title> per bar) and keeps the first load small.
import { toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { type FlowRunCriteria, FlowRunCriteriaSchema } from "../gen/runwire/v1/filters_pb";
import type { HistoryInterval } from "../gen/runwire/v1/history_pb";
import { formatTime, stateLook } from "../lib/format";
import { alignRange, type Bar, chooseInterval, niceMax, stackBars, stateTotals, tickLabel, timeTicks } from "../runs/chart";
import { ErrorBox } from "./ErrorBox";
import "../runs/runs.css";

export interface HistoryChartProps {
  /** Which runs to count (the page's filter, without its time range). */
  criteria: FlowRunCriteria | undefined;
  /** The range the bars cover. */
  start: Date;
  end: Date;
  /** Changing this reads the history again (at most every `throttleMs`): a live page bumps
   * it when its watch sees changes. */
  version?: number;
  throttleMs?: number;
  /** A name for the chart's summary ("Runs of etl"); "Runs" by default. */
  label?: string;
}

const HEIGHT = 120;
const AXIS = 20;
const LEFT = 34;

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function describeInterval(seconds: number): string {
  if (seconds % 86400 === 0) return seconds === 86400 ? "day" : `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : `${seconds / 3600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}

function scale(seconds: number): string {
  const unit = describeInterval(seconds);
  return /^\d/.test(unit) ? unit : `1 ${unit}`;
}

function barTitle(bar: Bar): string {
  const range = `${formatTime(bar.start)} – ${formatTime(bar.end)}`;
  if (!bar.total) return `${range}: no runs`;
  const parts = [...bar.segments].reverse().map((s) => `${s.count} ${stateLook(s.state).label.toLowerCase()}`);
  return `${range}: ${bar.total} run${bar.total === 1 ? "" : "s"} (${parts.join(", ")})`;
}

/** Runs over time, one bar per interval stacked by state, from GetFlowRunHistory. */
export function HistoryChart({ criteria, start, end, version = 0, throttleMs = 5000, label = "Runs" }: HistoryChartProps) {
  const interval = chooseInterval(start, end);
  const range = alignRange(start, end, interval);
  const key = `${criteria ? hex(toBinary(FlowRunCriteriaSchema, criteria)) : ""}|${range.start.getTime()}|${range.end.getTime()}`;
  const [intervals, setIntervals] = useState<HistoryInterval[] | undefined>();
  const [error, setError] = useState<unknown>();
  const [retry, setRetry] = useState(0);
  // A version change is honoured after the throttle; a criteria change at once.
  const [readVersion, setReadVersion] = useState(version);
  const lastRead = useRef(0);
  useEffect(() => {
    if (version === readVersion) return;
    const wait = Math.max(0, lastRead.current + throttleMs - Date.now());
    const t = setTimeout(() => setReadVersion(version), wait);
    return () => clearTimeout(t);
  }, [version, readVersion, throttleMs]);

  useEffect(() => {
    const abort = new AbortController();
    lastRead.current = Date.now();
    api.flowRuns
      .getFlowRunHistory(
        {
          historyStart: timestampFromDate(range.start),
          historyEnd: timestampFromDate(range.end),
          historyInterval: { seconds: BigInt(interval), nanos: 0 },
          filter: criteria,
        },
        { signal: abort.signal },
      )
      .then(
        (r) => {
          setIntervals(r.intervals);
          setError(undefined);
        },
        (err: unknown) => abort.signal.aborted || setError(err),
      );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, readVersion, retry]);

  const bars = useMemo(() => stackBars(intervals ?? []), [intervals]);
  const width = useWidth();
  const plot = Math.max(0, width.value - LEFT);
  const max = niceMax(Math.max(0, ...bars.map((b) => b.total)));
  const totals = stateTotals(bars);
  const all = totals.reduce((n, t) => n + t.count, 0);
  const summary =
    `${label} per ${describeInterval(interval)}, ${formatTime(range.start.getTime())} to ${formatTime(range.end.getTime())}: ` +
    (all ? `${all} runs, ${totals.map((t) => `${t.count} ${stateLook(t.state).label.toLowerCase()}`).join(", ")}` : "no runs");
  const slot = bars.length ? plot / bars.length : 0;
  const gap = slot > 6 ? Math.min(3, slot * 0.2) : 0;
  const y = (n: number) => HEIGHT - (n / max) * HEIGHT;

  return (
    <figure class="history" data-testid="history-chart" aria-busy={intervals === undefined}>
      {error !== undefined && <ErrorBox error={error} onRetry={() => setRetry((r) => r + 1)} />}
      <div class="history-plot" ref={width.ref}>
        {width.value > 0 && (
          <svg width={width.value} height={HEIGHT + AXIS} role="img" aria-label={summary}>
            {[0, max / 2, max].map((v) => (
              <g key={v} class="history-grid">
                <line x1={LEFT} x2={width.value} y1={y(v) + 0.5} y2={y(v) + 0.5} />
                <text x={LEFT - 6} y={y(v)} dy="0.32em" text-anchor="end">
                  {Number.isInteger(v) ? v : ""}
                </text>
              </g>
            ))}
            {bars.map((bar, i) => (
              <g key={bar.start} class="history-bar" data-testid="history-bar" data-total={bar.total}>
                <title>{barTitle(bar)}</title>
                {/* The full column catches the pointer, so thin bars still show their title. */}
                <rect class="history-hit" x={LEFT + i * slot} y={0} width={slot} height={HEIGHT} />
                {bar.segments.map((s) => (
                  <rect
                    key={s.state}
                    class={`seg seg-${stateLook(s.state).tone}`}
                    x={LEFT + i * slot + gap / 2}
                    width={Math.max(1, slot - gap)}
                    y={y(s.below + s.count)}
                    height={Math.max(1, (s.count / max) * HEIGHT)}
                  />
                ))}
              </g>
            ))}
            {timeTicks(bars, interval).map((t) => {
              const i = bars.findIndex((b) => b.start === t);
              return (
                <text key={t} class="history-tick" x={LEFT + i * slot} y={HEIGHT + 14}>
                  {tickLabel(t)}
                </text>
              );
            })}
          </svg>
        )}
      </div>
      <figcaption class="history-legend">
        {totals.length ? (
          <ul>
            {totals.map((t) => (
              <li key={t.state}>
                <span class={`swatch seg-${stateLook(t.state).tone}`} aria-hidden="true" />
                {stateLook(t.state).label} <span class="num">{t.count.toLocaleString()}</span>
              </li>
            ))}
          </ul>
        ) : (
          <span class="muted">{intervals === undefined ? "Loading history…" : "No runs in this range"}</span>
        )}
        <span class="muted history-scale">1 bar = {scale(interval)}</span>
      </figcaption>
    </figure>
  );
}

function useWidth() {
  const ref = useRef<HTMLDivElement>(null);
  const [value, setValue] = useState(0);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    setValue(el.clientWidth);
    const observer = new ResizeObserver(() => setValue(el.clientWidth));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return { ref, value };
}
