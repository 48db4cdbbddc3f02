// The deployments table, shown on its own page and on a flow's page, with each limited
// deployment's slots in use.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api } from "../api";
import type { Deployment } from "../gen/runwire/v1/deployment_pb";
import { ErrorBox } from "../components/ErrorBox";
import { useRefresh } from "./hooks";
import { collisionLabel, countBy, runsHref, slotCriteria } from "./logic";
import { Meter, Tags } from "./parts";

const MAX_PAGES = 5;

/** Slots in use per limited deployment: its runs in a slot-holding state, counted as the
 * server counts them. One list call covers every deployment shown (a limited deployment
 * rarely has more runs in those states than its limit), asked again every few seconds. */
export function useSlots(deployments: readonly Deployment[]): { slots: Map<string, number> | undefined; error: unknown } {
  const ids = useMemo(
    () => deployments.filter((d) => d.concurrencyLimit !== undefined).map((d) => d.id),
    [deployments],
  );
  const key = ids.join(",");
  const [state, setState] = useState<{ slots?: Map<string, number>; error?: unknown; key: string }>({ key: "" });
  const [tick, setTick] = useState(0);
  useRefresh(() => setTick((t) => t + 1));
  useEffect(() => {
    if (!ids.length) {
      setState({ slots: new Map(), key });
      return;
    }
    const abort = new AbortController();
    (async () => {
      const runs = [];
      let token = "";
      for (let page = 0; page < MAX_PAGES; page++) {
        const res = await api.flowRuns.listFlowRuns(
          { filter: slotCriteria(ids), pageSize: 200, pageToken: token },
          { signal: abort.signal },
        );
        runs.push(...res.flowRuns);
        token = res.nextPageToken;
        if (!token) break;
      }
      return countBy(runs, (r) => r.deploymentId);
    })().then(
      (slots) => abort.signal.aborted || setState({ slots, key }),
      (error: unknown) => abort.signal.aborted || setState((s) => ({ ...s, error })),
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, tick]);
  // Counts of another set of deployments (before a search changed the list) are not shown.
  return { slots: state.key === key ? state.slots : undefined, error: state.error };
}

/** Flow names for the flows of these deployments: one call per set shown. */
export function useFlowNames(flowIds: readonly string[]): Map<string, string> {
  const unique = [...new Set(flowIds)].sort();
  const key = unique.join(",");
  const [names, setNames] = useState(new Map<string, string>());
  useEffect(() => {
    const missing = unique.filter((id) => !names.has(id));
    if (!missing.length) return;
    const abort = new AbortController();
    api.flows
      .listFlows({ flows: { id: { anyOf: { values: missing.slice(0, 200) } } }, pageSize: 200 }, { signal: abort.signal })
      .then(
        (res) => {
          if (abort.signal.aborted) return;
          setNames((old) => {
            const next = new Map(old);
            for (const f of res.flows) next.set(f.id, f.name);
            return next;
          });
        },
        () => undefined, // the table falls back to the flow's id
      );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return names;
}

export function DeploymentTable({
  deployments,
  showFlow,
  labelledBy,
}: {
  deployments: readonly Deployment[];
  showFlow: boolean;
  labelledBy: string;
}) {
  const { slots, error } = useSlots(deployments);
  const names = useFlowNames(showFlow ? deployments.map((d) => d.flowId) : []);
  return (
    <>
      {error !== undefined && <ErrorBox error={error} />}
      <div class="table-wrap">
        <table class="grid" aria-labelledby={labelledBy}>
          <thead>
            <tr>
              <th scope="col">Name</th>
              {showFlow && <th scope="col">Flow</th>}
              <th scope="col">Status</th>
              <th scope="col">Tags</th>
              <th scope="col">Work pool / queue</th>
              <th scope="col">Slots in use</th>
              <th scope="col">When full</th>
              <th scope="col">
                <span class="sr-only">Links</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {deployments.map((d) => (
              <tr key={d.id} data-deployment={d.id}>
                <td>
                  <span class="name">{d.name}</span>
                </td>
                {showFlow && (
                  <td>
                    <a href={`/flows/${d.flowId}`}>{names.get(d.flowId) ?? <span class="mono">{d.flowId.slice(0, 8)}</span>}</a>
                  </td>
                )}
                <td>
                  {d.paused ? <span class="pill pill-paused">‖ Paused</span> : <span class="pill pill-active">Active</span>}
                </td>
                <td>
                  <Tags tags={d.tags} />
                </td>
                <td>
                  {d.workPoolName || d.workQueueName ? (
                    <>
                      {d.workPoolName || <span class="muted">—</span>}
                      <span class="muted"> / </span>
                      {d.workQueueName || <span class="muted">—</span>}
                    </>
                  ) : (
                    <span class="muted">—</span>
                  )}
                </td>
                <td class="slots">
                  <Meter used={d.concurrencyLimit === undefined ? undefined : slots?.get(d.id) ?? (slots ? 0 : undefined)} limit={d.concurrencyLimit} />
                </td>
                <td>{d.concurrencyLimit === undefined ? <span class="muted">—</span> : collisionLabel(d.collisionStrategy)}</td>
                <td>
                  <a href={runsHref({ deployment: d.id })} aria-label={`Runs of ${d.name}`}>
                    Runs →
                  </a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
