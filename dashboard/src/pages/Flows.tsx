import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { Flow } from "../gen/runwire/v1/flow_pb";
import { FlowSort } from "../gen/runwire/v1/filters_pb";
import { ErrorBox } from "../components/ErrorBox";
import { StateBadge } from "../components/StateBadge";
import { type FlowStats, flowStats } from "../catalog/flowStats";
import { useSeen, usePaged } from "../catalog/hooks";
import { BAD_STATES, runsHref } from "../catalog/logic";
import { LoadMore, SearchBox, Tags, When } from "../catalog/parts";
import { useQuerySearch } from "../catalog/search";

const PAGE = 50;

export function Flows() {
  const search = useQuerySearch();
  const list = usePaged<Flow>(
    async (token, signal) => {
      const res = await api.flows.listFlows(
        {
          flows: search.query ? { name: { like: search.query } } : {},
          sort: FlowSort.NAME_ASC,
          pageSize: PAGE,
          pageToken: token,
        },
        { signal },
      );
      return { items: res.flows, next: res.nextPageToken };
    },
    [search.query],
  );
  const now = Date.now();
  return (
    <section aria-labelledby="flows-title">
      <div class="page-head">
        <h1 id="flows-title">Flows</h1>
      </div>
      <SearchBox value={search.text} onInput={search.setText} label="Search flows by name" placeholder="Search flows by name" />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.refresh} />}
      {list.loading && list.items.length === 0 ? (
        <p class="muted" aria-live="polite">
          Loading flows…
        </p>
      ) : list.items.length === 0 && list.error === undefined ? (
        <p class="empty">
          {search.query ? (
            <>No flow's name contains “{search.query}”.</>
          ) : (
            <>No flows yet. A flow appears here once a client creates it or starts its first run.</>
          )}
        </p>
      ) : (
        <>
          <div class="table-wrap">
            <table class="grid" aria-labelledby="flows-title">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Tags</th>
                  <th scope="col">Last run</th>
                  <th scope="col" class="num">
                    Runs, 7 days
                  </th>
                  <th scope="col" class="num" title="Runs that failed or crashed in the last 7 days">
                    Failed, 7 days
                  </th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {list.items.map((flow) => (
                  <FlowRow key={flow.id} flow={flow} now={now} />
                ))}
              </tbody>
            </table>
          </div>
          <LoadMore shown={list.items.length} hasMore={list.hasMore} loading={list.loadingMore} onClick={list.loadMore} noun="flows" />
        </>
      )}
    </section>
  );
}

function FlowRow({ flow, now }: { flow: Flow; now: number }) {
  const ref = useRef<HTMLTableRowElement>(null);
  const seen = useSeen(ref);
  const [stats, setStats] = useState<FlowStats | undefined>(undefined);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    if (!seen) return;
    let live = true;
    flowStats(flow.id).then(
      (s) => live && setStats(s),
      () => live && setFailed(true),
    );
    return () => {
      live = false;
    };
  }, [seen, flow.id]);
  const pending = <span class="muted">{failed ? "?" : "…"}</span>;
  const last = stats?.last;
  return (
    <tr ref={ref} data-flow={flow.id}>
      <td>
        <a class="name" href={`/flows/${flow.id}`}>
          {flow.name}
        </a>
      </td>
      <td>
        <Tags tags={flow.tags} />
      </td>
      <td>
        {stats === undefined ? (
          pending
        ) : last ? (
          <a class="last-run" href={`/runs/${last.id}`} title={`Run ${last.name}`}>
            <StateBadge type={last.state?.type} name={last.state?.name} />
            <When ts={last.startTime ?? last.expectedStartTime ?? last.created} now={now} />
          </a>
        ) : (
          <span class="muted">no runs</span>
        )}
      </td>
      <td class="num">
        {stats === undefined ? pending : <a href={runsHref({ flow: flow.id, range: "7d" })}>{stats.week}</a>}
      </td>
      <td class="num">
        {stats === undefined ? (
          pending
        ) : stats.bad > 0 ? (
          <a class="bad" href={runsHref({ flow: flow.id, states: BAD_STATES, range: "7d" })}>
            {stats.bad}
          </a>
        ) : (
          <span class="muted">0</span>
        )}
      </td>
      <td>
        <When ts={flow.created} now={now} />
      </td>
    </tr>
  );
}

