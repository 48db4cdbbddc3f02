import { useState } from "preact/hooks";
import { api } from "../api";
import type { ConcurrencyLimit } from "../gen/runwire/v1/concurrency_limit_pb";
import { ErrorBox } from "../components/ErrorBox";
import { StateBadge } from "../components/StateBadge";
import { useCall } from "../lib/useCall";
import { usePaged, useRefresh } from "../catalog/hooks";
import { LoadMore, Meter, When } from "../catalog/parts";

const PAGE = 100;
/** How many of a limit's task runs the expanded row names (one list call for them). */
const NAMED = 50;

export function Limits() {
  const list = usePaged<ConcurrencyLimit>(
    async (token, signal) => {
      const res = await api.limits.listConcurrencyLimits({ pageSize: PAGE, pageToken: token }, { signal });
      return { items: res.concurrencyLimits, next: res.nextPageToken };
    },
    [],
  );
  // No watch stream covers tag limits: slots are asked again every 10 s while the tab shows.
  useRefresh(list.refresh);
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const toggle = (tag: string) =>
    setOpen((old) => {
      const next = new Set(old);
      if (next.has(tag)) next.delete(tag);
      else next.add(tag);
      return next;
    });
  const now = Date.now();
  return (
    <section aria-labelledby="limits-title">
      <div class="page-head">
        <h1 id="limits-title">Concurrency limits</h1>
        <span class="muted">by task-run tag</span>
        <span class="live" title="Slots are asked again every 10 seconds while this tab is visible">
          Slots refresh every 10 s
        </span>
      </div>
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.refresh} />}
      {list.loading && list.items.length === 0 ? (
        <p class="muted">Loading limits…</p>
      ) : list.items.length === 0 && list.error === undefined ? (
        <p class="empty">
          No concurrency limits. Make one with <code>runwire concurrency-limit create TAG LIMIT</code>; task runs
          carrying the tag then wait for a slot.
        </p>
      ) : (
        <>
          <div class="table-wrap">
            <table class="grid" aria-labelledby="limits-title">
              <thead>
                <tr>
                  <th scope="col">Tag</th>
                  <th scope="col" class="num">
                    Limit
                  </th>
                  <th scope="col">Slots in use</th>
                  <th scope="col">Active task runs</th>
                  <th scope="col">Created</th>
                  <th scope="col">Updated</th>
                </tr>
              </thead>
              <tbody>
                {list.items.map((limit) => {
                  const expanded = open.has(limit.tag);
                  const detailId = `slots-${limit.id}`;
                  return [
                    <tr key={limit.id} data-limit={limit.tag}>
                      <td>
                        <span class="name tag-name">{limit.tag}</span>
                      </td>
                      <td class="num">{limit.concurrencyLimit}</td>
                      <td class="slots">
                        <Meter used={limit.activeSlots.length} limit={limit.concurrencyLimit} />
                      </td>
                      <td>
                        {limit.activeSlots.length ? (
                          <button
                            type="button"
                            class="expander"
                            aria-expanded={expanded}
                            aria-controls={detailId}
                            onClick={() => toggle(limit.tag)}
                          >
                            <span class="chev" aria-hidden="true">
                              ▸
                            </span>{" "}
                            {limit.activeSlots.length} task {limit.activeSlots.length === 1 ? "run" : "runs"}
                          </button>
                        ) : (
                          <span class="muted">none</span>
                        )}
                      </td>
                      <td>
                        <When ts={limit.created} now={now} />
                      </td>
                      <td>
                        <When ts={limit.updated} now={now} />
                      </td>
                    </tr>,
                    expanded && limit.activeSlots.length > 0 && (
                      <tr key={`${limit.id}-detail`} class="detail" id={detailId}>
                        <td colSpan={6}>
                          <ActiveSlots ids={limit.activeSlots} />
                        </td>
                      </tr>
                    ),
                  ];
                })}
              </tbody>
            </table>
          </div>
          <LoadMore shown={list.items.length} hasMore={list.hasMore} loading={list.loadingMore} onClick={list.loadMore} noun="limits" />
        </>
      )}
    </section>
  );
}

/** The task runs holding a limit's slots, named with their states and linked to their flow runs. */
function ActiveSlots({ ids }: { ids: readonly string[] }) {
  const key = ids.join(",");
  const named = ids.slice(0, NAMED);
  const runs = useCall(
    (signal) =>
      api.taskRuns.listTaskRuns({ filter: { taskRuns: { id: { anyOf: { values: named } } } }, pageSize: NAMED }, { signal }),
    [key],
  );
  const byId = new Map((runs.data?.taskRuns ?? []).map((t) => [t.id, t]));
  return (
    <>
      {runs.error !== undefined && <ErrorBox error={runs.error} onRetry={runs.reload} />}
      <ul class="slot-list">
        {ids.map((id) => {
          const task = byId.get(id);
          return (
            <li key={id} data-slot={id}>
              <span class="mono">{id}</span>
              {task ? (
                <>
                  <StateBadge type={task.state?.type} name={task.state?.name} />
                  <span>{task.name || task.taskKey}</span>
                  {task.flowRunId && <a href={`/runs/${task.flowRunId}`}>flow run →</a>}
                </>
              ) : (
                runs.loading && <span class="muted">…</span>
              )}
            </li>
          );
        })}
      </ul>
    </>
  );
}
