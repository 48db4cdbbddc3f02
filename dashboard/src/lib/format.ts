// How values read on screen: state names and their colours, times and durations. Pure
// functions of their arguments (and of `now` where time passes), so unit tests pin them.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { StateType } from "../gen/runwire/v1/state_pb";

export interface StateLook {
  /** What people call the state (Prefect's names). */
  label: string;
  /** The CSS class giving its colour: one per family, as the peers' UIs colour them. */
  tone: "scheduled" | "pending" | "running" | "completed" | "failed" | "cancelled" | "crashed" | "paused" | "unknown";
  /** A mark beside the colour, so state never rests on colour alone. */
  mark: string;
}

const LOOKS: Record<StateType, StateLook> = {
  [StateType.UNSPECIFIED]: { label: "Unknown", tone: "unknown", mark: "?" },
  [StateType.SCHEDULED]: { label: "Scheduled", tone: "scheduled", mark: "◷" },
  [StateType.PENDING]: { label: "Pending", tone: "pending", mark: "…" },
  [StateType.RUNNING]: { label: "Running", tone: "running", mark: "▶" },
  [StateType.COMPLETED]: { label: "Completed", tone: "completed", mark: "✓" },
  [StateType.FAILED]: { label: "Failed", tone: "failed", mark: "✕" },
  [StateType.CANCELLED]: { label: "Cancelled", tone: "cancelled", mark: "⊘" },
  [StateType.CRASHED]: { label: "Crashed", tone: "crashed", mark: "!" },
  [StateType.PAUSED]: { label: "Paused", tone: "paused", mark: "‖" },
  [StateType.CANCELLING]: { label: "Cancelling", tone: "cancelled", mark: "⊘" },
};

export function stateLook(type: StateType | undefined): StateLook {
  return LOOKS[type ?? StateType.UNSPECIFIED] ?? LOOKS[StateType.UNSPECIFIED];
}

/** The states in the order the dashboard lists them (filters, counts, chart legend). */
export const STATE_ORDER: readonly StateType[] = [
  StateType.SCHEDULED,
  StateType.PENDING,
  StateType.RUNNING,
  StateType.PAUSED,
  StateType.CANCELLING,
  StateType.COMPLETED,
  StateType.FAILED,
  StateType.CRASHED,
  StateType.CANCELLED,
];

const TERMINAL = new Set([StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]);

export function isTerminal(type: StateType | undefined): boolean {
  return type !== undefined && TERMINAL.has(type);
}

/** A state's URL name ("failed") and back; undefined for a name that is no state. */
export function stateSlug(type: StateType): string {
  return StateType[type].toLowerCase();
}

export function stateFromSlug(slug: string): StateType | undefined {
  const value = (StateType as unknown as Record<string, number>)[slug.toUpperCase()];
  return value === undefined || value === StateType.UNSPECIFIED ? undefined : (value as StateType);
}

export function millisOf(ts: Timestamp | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}

export function secondsOf(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) + d.nanos / 1e9;
}

/** "450ms", "12s", "3m 05s", "2h 04m", "3d 4h": the two largest units, as the peers' UIs do. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1).replace(/\.0$/, "") : Math.round(seconds)}s`;
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = s % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${two(minutes)}m`;
  return `${minutes}m ${two(secs)}s`;
}

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

/** "3 minutes ago", "in 2 hours", "now". */
export function formatRelative(millis: number | undefined, now: number): string {
  if (millis === undefined) return "—";
  const delta = (millis - now) / 1000;
  if (Math.abs(delta) < 5) return "now";
  for (const [unit, size] of UNITS) {
    if (Math.abs(delta) >= size || unit === "second") {
      return relative.format(Math.trunc(delta / size), unit);
    }
  }
  return "now";
}

/** "2026-12-03 14:05:09" in the viewer's time zone (ISO order sorts and reads everywhere). */
export function formatTime(millis: number | undefined): string {
  if (millis === undefined) return "—";
  const d = new Date(millis);
  const two = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
  );
}

/** A run's duration: the time it has spent running. While it runs, its total run time (the
 * earlier runs of a retried run) plus the time since the current Running state began; time
 * spent waiting between attempts does not count. */
export function runDuration(
  run: {
    totalRunTime?: Duration;
    startTime?: Timestamp;
    endTime?: Timestamp;
    state?: { type: StateType; timestamp?: Timestamp };
  },
  now: number,
): number | undefined {
  const total = secondsOf(run.totalRunTime);
  if (run.state?.type === StateType.RUNNING) {
    const since = millisOf(run.state.timestamp) ?? millisOf(run.startTime);
    if (since !== undefined) return total + Math.max(0, now - since) / 1000;
  }
  if (total > 0) return total;
  const start = millisOf(run.startTime);
  const end = millisOf(run.endTime);
  if (start !== undefined && end !== undefined) return (end - start) / 1000;
  return undefined;
}

/** Python's logging levels by name. */
export function levelName(level: number): string {
  if (level >= 50) return "CRITICAL";
  if (level >= 40) return "ERROR";
  if (level >= 30) return "WARNING";
  if (level >= 20) return "INFO";
  if (level >= 10) return "DEBUG";
  return "NOTSET";
}
