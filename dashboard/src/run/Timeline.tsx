import type { State } from "../gen/runwire/v1/state_pb";
import { StateBadge } from "../components/StateBadge";
import { formatDuration, formatRelative, formatTime, isTerminal, millisOf, stateLook } from "../lib/format";

export interface Stretch {
  state: State;
  start: number;
  /** When the next state began (or now, for the current state of a live run). */
  end: number;
  open: boolean;
}

/** The run's states as stretches of time, oldest first. */
export function stretches(states: readonly State[], now: number): Stretch[] {
  return states.map((state, i) => {
    const start = millisOf(state.timestamp) ?? now;
    const next = states[i + 1];
    const open = !next && !isTerminal(state.type);
    const end = next ? (millisOf(next.timestamp) ?? start) : open ? Math.max(start, now) : start;
    return { state, start, end, open };
  });
}

/** The state history: a bar of time spent in each state, then every state with its time,
 * message and how long the run stayed in it. */
export function Timeline({ states, now }: { states: readonly State[]; now: number }) {
  if (states.length === 0) return <p class="empty">No states yet.</p>;
  const parts = stretches(states, now);
  const first = parts[0].start;
  const total = Math.max(1, parts[parts.length - 1].end - first);
  return (
    <div class="timeline">
      <div class="tl-bar" aria-hidden="true">
        {parts.map((p) => {
          const width = ((p.end - p.start) / total) * 100;
          return (
            <span
              key={p.state.id}
              class={`tl-seg tone-${stateLook(p.state.type).tone}`}
              style={{ flexGrow: width, minWidth: width > 0 ? "3px" : "0" }}
              title={`${p.state.name}: ${formatDuration((p.end - p.start) / 1000)}`}
            />
          );
        })}
      </div>
      <ol class="tl-list" data-testid="timeline">
        {parts.map((p) => (
          <li key={p.state.id} data-testid="timeline-state">
            <time class="tl-time mono" dateTime={new Date(p.start).toISOString()} title={formatRelative(p.start, now)}>
              {formatTime(p.start)}
            </time>
            <StateBadge type={p.state.type} name={p.state.name} />
            <span class="tl-for muted num" title="time in this state">
              {p.end > p.start || p.open ? formatDuration((p.end - p.start) / 1000) : ""}
              {p.open && " so far"}
            </span>
            {p.state.message && <span class="tl-msg">{p.state.message}</span>}
          </li>
        ))}
      </ol>
    </div>
  );
}
