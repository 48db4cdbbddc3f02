// Flow and deployment names by id, cached for the page's life: rows render with ids first and
// get their names when one batched ListFlows / ListDeployments answers.
import { create } from "@bufbuild/protobuf";
import { api } from "../api";
import {
  DeploymentFilterSchema,
  FlowFilterSchema,
  StringFilterSchema,
  StringListSchema,
} from "../gen/runwire/v1/filters_pb";
import { Store, useStore } from "../lib/store";

const BATCH = 200;

export interface Names {
  flows: ReadonlyMap<string, string>;
  deployments: ReadonlyMap<string, string>;
}

export const names = new Store<Names>({ flows: new Map(), deployments: new Map() });
const asked = { flows: new Set<string>(), deployments: new Set<string>() };

export function rememberFlows(flows: readonly { id: string; name: string }[]): void {
  if (!flows.length) return;
  const map = new Map(names.get().flows);
  for (const f of flows) map.set(f.id, f.name);
  names.set({ ...names.get(), flows: map });
}

export function rememberDeployments(deployments: readonly { id: string; name: string }[]): void {
  if (!deployments.length) return;
  const map = new Map(names.get().deployments);
  for (const d of deployments) map.set(d.id, d.name);
  names.set({ ...names.get(), deployments: map });
}

function ids(values: string[]) {
  return create(StringFilterSchema, { anyOf: create(StringListSchema, { values }) });
}

/** Reads the names not known yet (each id asked once; a failure leaves the id showing). */
export async function resolveNames(flowIds: Iterable<string>, deploymentIds: Iterable<string>): Promise<void> {
  const known = names.get();
  const flows = [...new Set(flowIds)].filter((id) => id && !known.flows.has(id) && !asked.flows.has(id));
  const deployments = [...new Set(deploymentIds)].filter(
    (id) => id && !known.deployments.has(id) && !asked.deployments.has(id),
  );
  flows.forEach((id) => asked.flows.add(id));
  deployments.forEach((id) => asked.deployments.add(id));
  const calls: Promise<void>[] = [];
  for (let i = 0; i < flows.length; i += BATCH) {
    const values = flows.slice(i, i + BATCH);
    calls.push(
      api.flows
        .listFlows({ flows: create(FlowFilterSchema, { id: ids(values) }), pageSize: BATCH })
        .then((r) => rememberFlows(r.flows)),
    );
  }
  for (let i = 0; i < deployments.length; i += BATCH) {
    const values = deployments.slice(i, i + BATCH);
    calls.push(
      api.deployments
        .listDeployments({ deployments: create(DeploymentFilterSchema, { id: ids(values) }), pageSize: BATCH })
        .then((r) => rememberDeployments(r.deployments)),
    );
  }
  await Promise.allSettled(calls);
}

/** Names as they become known. */
export function useNames(): Names {
  return useStore(names);
}
