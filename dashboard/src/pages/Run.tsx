import { Code, ConnectError } from "@connectrpc/connect";
import { useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { StateType } from "../gen/runwire/v1/state_pb";
import { formatDuration, formatRelative, formatTime, isTerminal, millisOf, runDuration, stateLook } from "../lib/format";
import { useCall } from "../lib/useCall";
import { Actions } from "../run/Actions";
import { isFinished } from "../run/liveRun";
import { Logs } from "../run/Logs";
import { describeResult, formatParameters, summarizeParameters } from "../run/present";
import { TaskGraph } from "../run/TaskGraph";
import { TaskRuns } from "../run/TaskRuns";
import { Timeline } from "../run/Timeline";
import { type Connection, useLiveRun } from "../run/useLiveRun";
import "../run/run.css";

/** The current time, ticking each second while `ticking` (a running run's duration). */
function useNow(ticking: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    setNow(Date.now());
    if (!ticking) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [ticking]);
  return now;
}

export function Run() {
  const { params } = useRoute();
  const id = params.id ?? "";
  // The router keeps this component when only the id changes (Back from one run to another):
  // a key makes each run's page its own, with nothing left of the previous run's.
  return <RunPage key={id} id={id} />;
}

function RunPage({ id }: { id: string }) {
  const view = useLiveRun(id);
  const { live, runError } = view;
  const [selected, setSelected] = useState<string | undefined>(undefined);
  const run = live.run;
  const now = useNow(run?.state?.type === StateType.RUNNING || (run !== undefined && !isTerminal(run.state?.type)));

  useEffect(() => {
    if (run) document.title = `${run.name} · Runwire`;
  }, [run?.name]);

  if (!run) {
    if (runError !== undefined && ConnectError.from(runError).code === Code.NotFound) return <RunNotFound id={id} />;
    if (runError !== undefined) {
      return (
        <section class="run-page">
          <h1>Run</h1>
          <ErrorBox error={runError} onRetry={view.retry} />
        </section>
      );
    }
    return (
      <section class="run-page" aria-busy="true">
        <p class="muted">Loading run…</p>
      </section>
    );
  }

  const finished = isFinished(live);
  return (
    <section class="run-page">
      {view.connection === "deleted" && (
        <div class="run-gone" role="alert">
          This run has been deleted. <a href="/runs">See the runs</a>.
        </div>
      )}
      <Header run={run} now={now} connection={view.connection} finished={finished} retryAt={view.retryAt} />
      <Actions run={run} onChanged={view.refreshRun} />
      <Details run={run} />
      {view.listError !== undefined && <ErrorBox error={view.listError} onRetry={view.retry} />}
      <section class="panel run-graph" aria-labelledby="graph-h">
        <h2 id="graph-h">Task graph</h2>
        {view.graph === undefined ? (
          <p class="empty">Loading the graph…</p>
        ) : (
          <TaskGraph nodes={view.graph} tasks={live.tasks} selected={selected} onSelect={setSelected} />
        )}
      </section>
      <div class="run-grid">
        <section class="panel" aria-labelledby="tasks-h">
          <h2 id="tasks-h">
            Task runs <span class="muted count">{live.tasks.size || ""}</span>
          </h2>
          <TaskRuns tasks={live.tasks} selected={selected} onSelect={setSelected} now={now} />
        </section>
        <section class="panel run-states" aria-labelledby="states-h">
          <h2 id="states-h">State history</h2>
          <Timeline states={live.states} now={now} />
        </section>
      </div>
      <section class="panel" aria-labelledby="logs-h">
        <h2 id="logs-h">Logs</h2>
        <Logs logs={live.logs} dropped={live.droppedLogs} tasks={live.tasks} onSelectTask={setSelected} />
      </section>
    </section>
  );
}

function RunNotFound({ id }: { id: string }) {
  return (
    <section class="run-page" data-testid="run-not-found">
      <h1>Run not found</h1>
      <p>
        No flow run has the id <code>{id}</code>: it may have been deleted. <a href="/runs">See the runs</a>.
      </p>
    </section>
  );
}

function LiveIndicator({ connection, finished, retryAt }: { connection: Connection; finished: boolean; retryAt?: number }) {
  if (connection === "deleted") return null;
  if (finished) {
    return (
      <span class="live done" data-testid="live" data-live="finished">
        Run finished
      </span>
    );
  }
  const text =
    connection === "live"
      ? "Live"
      : connection === "connecting"
        ? "Connecting…"
        : `Reconnecting${retryAt ? ` in ${Math.max(1, Math.round((retryAt - Date.now()) / 1000))} s` : "…"}`;
  return (
    <span class={`live ${connection}`} data-testid="live" data-live={connection} role="status">
      <span class="dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function When({ label, millis, now }: { label: string; millis: number | undefined; now: number }) {
  return (
    <div class="fact">
      <dt>{label}</dt>
      <dd>
        {millis === undefined ? (
          <span class="muted">—</span>
        ) : (
          <time dateTime={new Date(millis).toISOString()} title={formatRelative(millis, now)}>
            {formatTime(millis)}
          </time>
        )}
      </dd>
    </div>
  );
}

function Header({
  run,
  now,
  connection,
  finished,
  retryAt,
}: {
  run: FlowRun;
  now: number;
  connection: Connection;
  finished: boolean;
  retryAt?: number;
}) {
  const flow = useCall((signal) => api.flows.getFlow({ flowId: run.flowId }, { signal }), [run.flowId]);
  const deployment = useCall(
    (signal) =>
      run.deploymentId ? api.deployments.getDeployment({ deploymentId: run.deploymentId }, { signal }) : Promise.resolve(undefined),
    [run.deploymentId],
  );
  const look = stateLook(run.state?.type);
  const duration = runDuration(run, now);
  const flowName = flow.data?.flow?.name;
  return (
    <header class="run-head">
      <div class="run-title">
        <nav class="crumbs" aria-label="Breadcrumb">
          <a href="/runs">Runs</a>
          <span aria-hidden="true">/</span>
          <a href={`/flows/${run.flowId}`} data-testid="run-flow">
            {flowName ?? (flow.error ? "flow" : "…")}
          </a>
        </nav>
        <h1>
          <span class="run-name">{run.name}</span>
          <span class={`badge state-${look.tone} big`} data-testid="run-state" data-state={look.tone}>
            <span aria-hidden="true">{look.mark}</span> {run.state?.name || look.label}
          </span>
          <LiveIndicator connection={connection} finished={finished} retryAt={retryAt} />
        </h1>
        {run.state?.message && (
          <p class="run-message" data-testid="run-message">
            {run.state.message}
          </p>
        )}
      </div>
      <dl class="facts">
        <When label="Expected start" millis={millisOf(run.expectedStartTime)} now={now} />
        <When label="Started" millis={millisOf(run.startTime)} now={now} />
        <When label="Ended" millis={millisOf(run.endTime)} now={now} />
        <div class="fact">
          <dt>Duration</dt>
          <dd class="num" data-testid="run-duration">
            {duration === undefined ? <span class="muted">—</span> : formatDuration(duration)}
          </dd>
        </div>
        <div class="fact">
          <dt>Run count</dt>
          <dd class="num">{run.runCount}</dd>
        </div>
        {run.deploymentId && (
          <div class="fact">
            <dt>Deployment</dt>
            <dd>
              <a href={`/deployments#${run.deploymentId}`}>{deployment.data?.deployment?.name ?? run.deploymentId.slice(0, 8)}</a>
            </dd>
          </div>
        )}
        {run.workPoolName && (
          <div class="fact">
            <dt>Work pool</dt>
            <dd>
              {run.workPoolName}
              {run.workQueueName && <span class="muted"> / {run.workQueueName}</span>}
            </dd>
          </div>
        )}
      </dl>
    </header>
  );
}

function Details({ run }: { run: FlowRun }) {
  const params = formatParameters(run.parameters);
  const result = describeResult(run.state?.result);
  return (
    <div class="run-details">
      {run.tags.length > 0 && (
        <ul class="tags" aria-label="Tags">
          {run.tags.map((t) => (
            <li key={t} class="tag">
              {t}
            </li>
          ))}
        </ul>
      )}
      {result && (
        <p class="run-result" data-testid="run-result">
          <span class="muted">Result</span> <code>{result.serializer}</code> ·{" "}
          {result.uri ? <code class="uri">{result.uri}</code> : <span>{result.where}</span>}
        </p>
      )}
      <details class="params" data-testid="run-parameters">
        <summary>
          Parameters <span class="muted">{summarizeParameters(run.parameters)}</span>
        </summary>
        {params ? <pre class="mono">{params}</pre> : <p class="muted">This run has no parameters.</p>}
      </details>
      <span class="muted mono run-id" title="Flow run id">
        {run.id}
      </span>
    </div>
  );
}
