import { memo } from "preact/compat";
import { useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Log } from "../gen/runwire/v1/log_pb";
import type { TaskRun } from "../gen/runwire/v1/task_run_pb";
import { levelName, millisOf } from "../lib/format";

export const LEVELS: { value: number; label: string }[] = [
  { value: 0, label: "All levels" },
  { value: 10, label: "Debug and up" },
  { value: 20, label: "Info and up" },
  { value: 30, label: "Warning and up" },
  { value: 40, label: "Error and up" },
];

/** The most lines drawn at once; the rest stay a search away. */
export const SHOWN = 2_000;

/** The lines that pass the level filter and contain the search text (case-insensitively). */
export function filterLogs(logs: readonly Log[], minLevel: number, search: string): Log[] {
  const needle = search.trim().toLowerCase();
  if (minLevel <= 0 && !needle) return logs as Log[];
  return logs.filter(
    (l) => l.level >= minLevel && (!needle || l.message.toLowerCase().includes(needle) || l.name.toLowerCase().includes(needle)),
  );
}

function clock(log: Log): string {
  const ms = millisOf(log.timestamp);
  if (ms === undefined) return "";
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

const AT_BOTTOM = 24;

/** Memoized: the run page re-renders each second while a run's duration ticks, and thousands of
 * lines need not. */
export const Logs = memo(function Logs({
  logs,
  dropped,
  tasks,
  onSelectTask,
}: {
  logs: readonly Log[];
  dropped: number;
  tasks: ReadonlyMap<string, TaskRun>;
  onSelectTask: (id: string) => void;
}) {
  const [minLevel, setMinLevel] = useState(0);
  const [search, setSearch] = useState("");
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);
  // How often it has rendered, on its root as data-renders: the browser tests check that the
  // page's ticking clock leaves it alone.
  const renders = useRef(0);
  renders.current++;
  const matching = useMemo(() => filterLogs(logs, minLevel, search), [logs, minLevel, search]);
  const shown = matching.length > SHOWN ? matching.slice(matching.length - SHOWN) : matching;

  // While following, each new line keeps the view at the bottom; a person who scrolled up to
  // read is left where they are.
  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [shown, follow]);

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight <= AT_BOTTOM;
    if (atBottom !== follow) setFollow(atBottom);
  };

  return (
    <div class="logs" data-renders={renders.current}>
      <div class="logs-tools">
        <label>
          <span class="sr-only">Level</span>
          <select value={minLevel} onChange={(e) => setMinLevel(Number(e.currentTarget.value))} data-testid="log-level">
            {LEVELS.map((l) => (
              <option key={l.value} value={l.value}>
                {l.label}
              </option>
            ))}
          </select>
        </label>
        <input
          type="search"
          placeholder="Search logs  /"
          aria-label="Search logs"
          value={search}
          onInput={(e) => setSearch(e.currentTarget.value)}
          data-search
          data-testid="log-search"
        />
        <span class="muted num" aria-live="polite">
          {matching.length === logs.length ? `${logs.length} lines` : `${matching.length} of ${logs.length} lines`}
        </span>
        <button
          type="button"
          class={follow ? "follow on" : "follow"}
          aria-pressed={follow}
          onClick={() => setFollow(!follow)}
          title="Keep the newest line in view"
        >
          {follow ? "Following" : "Follow"}
        </button>
      </div>
      <div class="logs-box" ref={box} onScroll={onScroll} data-testid="logs" role="log" aria-label="Logs" tabIndex={0}>
        {(dropped > 0 || matching.length > shown.length) && (
          <div class="log-note muted">
            {matching.length > shown.length && `Showing the last ${shown.length} matching lines; search to find older ones. `}
            {dropped > 0 && `${dropped} older lines are no longer kept in this view.`}
          </div>
        )}
        {shown.length === 0 ? (
          <div class="log-note muted">{logs.length ? "No line matches." : "No logs yet."}</div>
        ) : (
          shown.map((l) => {
            const level = levelName(l.level);
            const task = l.taskRunId ? tasks.get(l.taskRunId) : undefined;
            return (
              <div key={l.id} class={`log-line lv-${level.toLowerCase()}`} data-testid="log-line" data-level={level}>
                <time class="log-time">{clock(l)}</time>
                <span class="log-level">{level}</span>
                {l.taskRunId ? (
                  <button type="button" class="log-src link" onClick={() => onSelectTask(l.taskRunId)} title={l.name}>
                    {task?.name || task?.taskKey || "task"}
                  </button>
                ) : (
                  <span class="log-src" title={l.name}>
                    {l.name || "flow"}
                  </span>
                )}
                <span class="log-msg">{l.message}</span>
              </div>
            );
          })
        )}
      </div>
    </div>
  );
});
