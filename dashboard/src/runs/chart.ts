// The history chart's arithmetic, apart from its drawing so unit tests pin it: how long a bar
// is, how each bar's states stack, and where the time ticks go.
import type { HistoryInterval } from "../gen/runwire/v1/history_pb";
import type { StateType } from "../gen/runwire/v1/state_pb";
import { STATE_ORDER, millisOf } from "../lib/format";

/** Bar lengths people read without arithmetic, in seconds. */
const STEPS = [
  60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 4 * 3600, 6 * 3600, 12 * 3600, 86400,
  2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 90 * 86400, 365 * 86400,
];

/** The shortest friendly bar length giving at most `most` bars over the range (so the chart
 * has between about half of that and `most` bars: 30 to 60 by default). */
export function chooseInterval(start: Date, end: Date, most = 60): number {
  const span = Math.max(1, (end.getTime() - start.getTime()) / 1000);
  for (const step of STEPS) if (span / step <= most) return step;
  return Math.ceil(span / most);
}

/** The range widened to whole intervals, so bars start at round local times (whole hours,
 * local midnights). `offsetMinutes` is the zone's Date#getTimezoneOffset (a parameter for tests). */
export function alignRange(start: Date, end: Date, interval: number, offsetMinutes?: number): { start: Date; end: Date } {
  const ms = interval * 1000;
  const offset = (offsetMinutes ?? start.getTimezoneOffset()) * 60_000;
  const from = Math.floor((start.getTime() - offset) / ms) * ms + offset;
  const to = Math.ceil((end.getTime() - offset) / ms) * ms + offset;
  return { start: new Date(from), end: new Date(Math.max(to, from + ms)) };
}

export interface Segment {
  state: StateType;
  count: number;
  /** Runs below this segment in the bar. */
  below: number;
}

export interface Bar {
  start: number;
  end: number;
  total: number;
  /** Bottom to top, in STATE_ORDER. */
  segments: Segment[];
}

/** One bar per interval, its states merged by type (names like "Late" count as their type). */
export function stackBars(intervals: readonly HistoryInterval[]): Bar[] {
  return intervals.map((interval) => {
    const byType = new Map<StateType, number>();
    for (const s of interval.states) {
      byType.set(s.stateType, (byType.get(s.stateType) ?? 0) + Number(s.countRuns));
    }
    const segments: Segment[] = [];
    let below = 0;
    for (const state of STATE_ORDER) {
      const count = byType.get(state) ?? 0;
      if (count <= 0) continue;
      segments.push({ state, count, below });
      below += count;
    }
    return {
      start: millisOf(interval.intervalStart) ?? 0,
      end: millisOf(interval.intervalEnd) ?? 0,
      total: below,
      segments,
    };
  });
}

/** The top of the count axis: the tallest bar rounded up to 1, 2 or 5 times a power of ten. */
export function niceMax(value: number): number {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

/** Totals by state over all bars, in STATE_ORDER, leaving out states with no runs. */
export function stateTotals(bars: readonly Bar[]): { state: StateType; count: number }[] {
  const totals = new Map<StateType, number>();
  for (const bar of bars) for (const s of bar.segments) totals.set(s.state, (totals.get(s.state) ?? 0) + s.count);
  return STATE_ORDER.filter((s) => totals.has(s)).map((state) => ({ state, count: totals.get(state) ?? 0 }));
}

const TICK_STEPS = [
  300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400,
  30 * 86400,
];

/** Tick times on round local times (whole hours, midnights), at most `most` of them; each is
 * a bar's start. `offsetMinutes` is the zone's Date#getTimezoneOffset (a parameter for tests). */
export function timeTicks(bars: readonly Bar[], interval: number, most = 7, offsetMinutes?: number): number[] {
  if (!bars.length) return [];
  const span = (bars[bars.length - 1].end - bars[0].start) / 1000;
  const step = TICK_STEPS.find((s) => s >= interval && span / s <= most) ?? Math.max(interval, Math.ceil(span / most));
  const ticks: number[] = [];
  for (const bar of bars) {
    const offset = (offsetMinutes ?? new Date(bar.start).getTimezoneOffset()) * 60_000;
    if ((bar.start - offset) % (step * 1000) === 0) ticks.push(bar.start);
  }
  return ticks;
}

/** A tick's label: the date at midnight (and for day-long bars), the clock otherwise. */
export function tickLabel(millis: number): string {
  const d = new Date(millis);
  const two = (n: number) => String(n).padStart(2, "0");
  if (d.getHours() === 0 && d.getMinutes() === 0) return `${d.toLocaleString("en", { month: "short" })} ${d.getDate()}`;
  return `${two(d.getHours())}:${two(d.getMinutes())}`;
}
