import { Code, ConnectError } from "@connectrpc/connect";
import { useMemo } from "preact/hooks";
import { useRoute } from "preact-iso";
import { api } from "../api";
import { FlowRunSort } from "../gen/runwire/v1/filters_pb";
import { ErrorBox } from "../components/ErrorBox";
import { HistoryChart } from "../components/HistoryChart";
import { StateBadge } from "../components/StateBadge";
import { formatDuration, formatTime, millisOf, runDuration } from "../lib/format";
import { useCall } from "../lib/useCall";
import { DeploymentTable } from "../catalog/deployments";
import { useRefresh } from "../catalog/hooks";
import { DAY_MS, flowChartCriteria, flowCriteria, runsHref } from "../catalog/logic";
import { Tags, When } from "../catalog/parts";

const RECENT = 20;

export function Flow() {
  const id = useRoute().params.id ?? "";
  const flow = useCall((signal) => api.flows.getFlow({ flowId: id }, { signal }), [id]);
  if (flow.error !== undefined && ConnectError.from(flow.error).code === Code.NotFound) {
    return (
      <section>
        <h1>Flow not found</h1>
        <p>
          There is no flow with id <code>{id}</code> on this server (it may have been deleted).{" "}
          <a href="/flows">See all flows</a>.
        </p>
      </section>
    );
  }
  const f = flow.data?.flow;
  if (!f) {
    return (
      <section>
        <h1>Flow</h1>
        {flow.error !== undefined ? <ErrorBox error={flow.error} onRetry={flow.reload} /> : <p class="muted">Loading…</p>}
      </section>
    );
  }
  const now = Date.now();
  return (
    <section aria-labelledby="flow-title">
      <div class="page-head">
        <h1 id="flow-title">{f.name}</h1>
        <span class="muted">Flow</span>
      </div>
      <dl class="meta">
        <dt>Id</dt>
        <dd class="mono">{f.id}</dd>
        <dt>Tags</dt>
        <dd>
          <Tags tags={f.tags} />
        </dd>
        <dt>Created</dt>
        <dd>
          {formatTime(millisOf(f.created))} <span class="muted">(<When ts={f.created} now={now} />)</span>
        </dd>
        <dt>Updated</dt>
        <dd>
          {formatTime(millisOf(f.updated))} <span class="muted">(<When ts={f.updated} now={now} />)</span>
        </dd>
      </dl>
      <FlowHistory flowId={f.id} />
      <RecentRuns flowId={f.id} />
      <FlowDeployments flowId={f.id} />
    </section>
  );
}

function FlowHistory({ flowId }: { flowId: string }) {
  const criteria = useMemo(() => flowChartCriteria(flowId), [flowId]);
  // The range is fixed when the page opens; the chart follows its criteria, not the clock.
  const [start, end] = useMemo(() => {
    const e = new Date();
    return [new Date(e.getTime() - 7 * DAY_MS), e];
  }, [flowId]);
  return (
    <>
      <div class="section-head">
        <h2 id="flow-history">Runs, last 7 days</h2>
        <a href={runsHref({ flow: flowId, range: "7d" })}>Runs of the last 7 days →</a>
      </div>
      <HistoryChart criteria={criteria} start={start} end={end} />
    </>
  );
}

function RecentRuns({ flowId }: { flowId: string }) {
  const runs = useCall(
    (signal) =>
      api.flowRuns.listFlowRuns({ filter: flowCriteria(flowId), sort: FlowRunSort.ID_DESC, pageSize: RECENT }, { signal }),
    [flowId],
  );
  // A modest refresh keeps running runs' states and durations honest while the page is open.
  useRefresh(runs.reload);
  const now = Date.now();
  const items = runs.data?.flowRuns ?? [];
  return (
    <>
      <div class="section-head">
        <h2 id="flow-runs">Recent runs</h2>
        <a href={runsHref({ flow: flowId })} data-testid="all-runs">
          See all runs →
        </a>
      </div>
      {runs.error !== undefined && <ErrorBox error={runs.error} onRetry={runs.reload} />}
      {runs.data === undefined ? (
        runs.error === undefined && <p class="muted">Loading runs…</p>
      ) : items.length === 0 ? (
        <p class="empty">This flow has no runs yet.</p>
      ) : (
        <div class="table-wrap">
          <table class="grid" aria-labelledby="flow-runs">
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">State</th>
                <th scope="col">Start</th>
                <th scope="col" class="num">
                  Duration
                </th>
                <th scope="col">Tags</th>
              </tr>
            </thead>
            <tbody>
              {items.map((run) => {
                const seconds = runDuration(run, now);
                return (
                  <tr key={run.id} data-run={run.id}>
                    <td>
                      <a class="name" href={`/runs/${run.id}`}>
                        {run.name || run.id}
                      </a>
                    </td>
                    <td>
                      <StateBadge type={run.state?.type} name={run.state?.name} />
                    </td>
                    <td>
                      <When ts={run.startTime ?? run.expectedStartTime} now={now} />
                    </td>
                    <td class="num">{seconds === undefined ? <span class="muted">—</span> : formatDuration(seconds)}</td>
                    <td>
                      <Tags tags={run.tags} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function FlowDeployments({ flowId }: { flowId: string }) {
  const deps = useCall(
    (signal) => api.deployments.listDeployments({ flows: { id: { anyOf: { values: [flowId] } } }, pageSize: 200 }, { signal }),
    [flowId],
  );
  const items = deps.data?.deployments ?? [];
  return (
    <>
      <div class="section-head">
        <h2 id="flow-deployments">Deployments</h2>
      </div>
      {deps.error !== undefined && <ErrorBox error={deps.error} onRetry={deps.reload} />}
      {deps.data === undefined ? (
        deps.error === undefined && <p class="muted">Loading deployments…</p>
      ) : items.length === 0 ? (
        <p class="empty">This flow has no deployments.</p>
      ) : (
        <DeploymentTable deployments={items} showFlow={false} labelledBy="flow-deployments" />
      )}
    </>
  );
}
