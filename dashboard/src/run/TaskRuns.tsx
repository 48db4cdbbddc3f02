import { useEffect, useMemo, useRef } from "preact/hooks";
import type { TaskRun } from "../gen/runwire/v1/task_run_pb";
import { StateBadge } from "../components/StateBadge";
import { formatDuration, formatRelative, formatTime, millisOf, runDuration } from "../lib/format";

/** Task runs in the order they ran: started ones by start time, the rest by expected start. */
export function taskOrder(a: TaskRun, b: TaskRun): number {
  const ta = millisOf(a.startTime) ?? millisOf(a.expectedStartTime) ?? millisOf(a.created) ?? Infinity;
  const tb = millisOf(b.startTime) ?? millisOf(b.expectedStartTime) ?? millisOf(b.created) ?? Infinity;
  return ta - tb || a.name.localeCompare(b.name);
}

export function TaskRuns({
  tasks,
  selected,
  onSelect,
  now,
}: {
  tasks: ReadonlyMap<string, TaskRun>;
  selected: string | undefined;
  onSelect: (id: string) => void;
  now: number;
}) {
  const rows = useMemo(() => [...tasks.values()].sort(taskOrder), [tasks]);
  const body = useRef<HTMLTableSectionElement>(null);
  useEffect(() => {
    if (!selected || !body.current) return;
    const row = body.current.querySelector(`tr[data-task-id="${CSS.escape(selected)}"]`);
    row?.scrollIntoView?.({ block: "nearest" });
  }, [selected]);
  if (rows.length === 0) return <p class="empty">No task runs.</p>;
  return (
    <div class="tr-scroll">
      <table class="grid tr-table" data-testid="task-runs">
        <thead>
          <tr>
            <th scope="col">Task run</th>
            <th scope="col">State</th>
            <th scope="col">Started</th>
            <th scope="col" class="num">Duration</th>
            <th scope="col" class="num">Runs</th>
          </tr>
        </thead>
        <tbody ref={body}>
          {rows.map((t) => {
            const start = millisOf(t.startTime);
            const duration = runDuration(t, now);
            return (
              <tr
                key={t.id}
                data-task-id={t.id}
                data-testid="task-row"
                class={selected === t.id ? "selected" : undefined}
                aria-selected={selected === t.id}
                onClick={() => onSelect(t.id)}
              >
                <td>
                  <button type="button" class="link tr-name" onClick={() => onSelect(t.id)} title={t.taskKey}>
                    {t.name || t.taskKey}
                  </button>
                </td>
                <td>
                  <StateBadge type={t.state?.type} name={t.state?.name} />
                </td>
                <td class="mono" title={start === undefined ? undefined : formatRelative(start, now)}>
                  {formatTime(start)}
                </td>
                <td class="num">{duration === undefined ? "—" : formatDuration(duration)}</td>
                <td class="num">{t.runCount}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
