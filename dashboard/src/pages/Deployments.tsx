import { api } from "../api";
import type { Deployment } from "../gen/runwire/v1/deployment_pb";
import { DeploymentSort } from "../gen/runwire/v1/filters_pb";
import { ErrorBox } from "../components/ErrorBox";
import { DeploymentTable } from "../catalog/deployments";
import { usePaged } from "../catalog/hooks";
import { LoadMore, SearchBox } from "../catalog/parts";
import { useQuerySearch } from "../catalog/search";

const PAGE = 50;

export function Deployments() {
  const search = useQuerySearch();
  const list = usePaged<Deployment>(
    async (token, signal) => {
      const res = await api.deployments.listDeployments(
        {
          deployments: search.query ? { flowOrDeploymentName: { like: search.query } } : {},
          sort: DeploymentSort.NAME_ASC,
          pageSize: PAGE,
          pageToken: token,
        },
        { signal },
      );
      return { items: res.deployments, next: res.nextPageToken };
    },
    [search.query],
  );
  return (
    <section aria-labelledby="deployments-title">
      <div class="page-head">
        <h1 id="deployments-title">Deployments</h1>
        <span class="live" title="Slots in use are asked again every 10 seconds while this tab is visible">
          Slots refresh every 10 s
        </span>
      </div>
      <SearchBox
        value={search.text}
        onInput={search.setText}
        label="Search deployments by their name or their flow's"
        placeholder="Search by deployment or flow name"
      />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.refresh} />}
      {list.loading && list.items.length === 0 ? (
        <p class="muted">Loading deployments…</p>
      ) : list.items.length === 0 && list.error === undefined ? (
        <p class="empty">
          {search.query ? <>No deployment or flow name contains “{search.query}”.</> : <>No deployments yet.</>}
        </p>
      ) : (
        <>
          <DeploymentTable deployments={list.items} showFlow labelledBy="deployments-title" />
          <LoadMore shown={list.items.length} hasMore={list.hasMore} loading={list.loadingMore} onClick={list.loadMore} noun="deployments" />
        </>
      )}
    </section>
  );
}
