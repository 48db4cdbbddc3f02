// The list's calls: the first page, later pages as the reader scrolls, and one WatchFlowRuns
// from the first page's cursor that reconnects (with backoff) from the last cursor it saw.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { type FlowRunCriteria, FlowRunCriteriaSchema, FlowRunSort } from "../gen/runwire/v1/filters_pb";
import { EMPTY_LIST, type ListRules, type LiveList, addPage, applyEvent, sameView, upsertRuns } from "./liveList";
import { withIds } from "./query";

export const PAGE_SIZE = 200;
/** Runs named by the watch are read together: a burst of new runs costs one call. */
const BATCH_MS = 120;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export type LiveStatus = "connecting" | "live" | "reconnecting";

export interface LiveRuns {
  list: LiveList;
  error: unknown;
  moreError: unknown;
  status: LiveStatus;
  loadMore: () => void;
  reload: () => void;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export function useLiveRuns(
  key: string,
  criteria: FlowRunCriteria,
  watchCriteria: FlowRunCriteria,
  sort: FlowRunSort,
  rules: ListRules,
): LiveRuns {
  const [list, setList] = useState<LiveList>(EMPTY_LIST);
  const [error, setError] = useState<unknown>();
  const [moreError, setMoreError] = useState<unknown>();
  const [status, setStatus] = useState<LiveStatus>("connecting");
  const [generation, setGeneration] = useState(0);
  const ref = useRef<LiveList>(EMPTY_LIST);
  const session = useRef({ signal: new AbortController().signal, criteria, sort, loadingMore: false });
  const update = useCallback((fn: (l: LiveList) => LiveList) => {
    const prev = ref.current;
    const next = fn(prev);
    if (next === prev) return;
    ref.current = next;
    // A change that alters nothing shown (the cursor, remembered events) costs no render.
    if (!sameView(prev, next)) setList(next);
  }, []);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);

  useEffect(() => {
    const abort = new AbortController();
    const { signal } = abort;
    session.current = { signal, criteria, sort, loadingMore: false };
    ref.current = EMPTY_LIST;
    setList(EMPTY_LIST);
    setError(undefined);
    setMoreError(undefined);
    setStatus("connecting");

    const wanted = new Set<string>();
    let flushTimer: ReturnType<typeof setTimeout> | undefined;
    const flush = async () => {
      flushTimer = undefined;
      const ids = [...wanted];
      wanted.clear();
      const any = create(FlowRunCriteriaSchema, {});
      for (let i = 0; i < ids.length; i += PAGE_SIZE) {
        const page = await api.flowRuns.listFlowRuns(
          { filter: withIds(any, ids.slice(i, i + PAGE_SIZE)), pageSize: PAGE_SIZE },
          { signal },
        );
        if (!signal.aborted) update((l) => upsertRuns(l, page.flowRuns, rules, page.watchCursor));
      }
    };
    const want = (ids: readonly string[]) => {
      for (const id of ids) wanted.add(id);
      // A failed read leaves the row as the event left it; the next change reads it again.
      flushTimer ??= setTimeout(() => void flush().catch(() => undefined), BATCH_MS);
    };

    void (async () => {
      try {
        // In orders other than newest-first the rows do not say which runs are new: the
        // newest id before the read does (a run with a greater one was created since).
        const horizon = rules.newestFirst
          ? undefined
          : await api.flowRuns
              .listFlowRuns({ sort: FlowRunSort.ID_DESC, pageSize: 1 }, { signal })
              .then((r) => r.flowRuns[0]?.id ?? "");
        const first = await api.flowRuns.listFlowRuns({ filter: criteria, sort, pageSize: PAGE_SIZE }, { signal });
        update((l) => addPage(l, first, true, horizon));
      } catch (err) {
        if (!signal.aborted) setError(err);
        return;
      }
      let backoff = BACKOFF_MIN_MS;
      while (!signal.aborted) {
        try {
          const stream = api.flowRuns.watchFlowRuns({ filter: watchCriteria, afterCursor: ref.current.cursor }, { signal });
          for await (const message of stream) {
            backoff = BACKOFF_MIN_MS;
            const event = message.event;
            if (event.case === "flowRunState" && event.value.state) {
              const outcome = applyEvent(
                ref.current,
                { cursor: message.cursor, flowRunId: event.value.flowRunId, state: event.value.state },
                rules,
              );
              update(() => outcome.list);
              if (outcome.fetch.length) want(outcome.fetch);
            } else if (event.case === "caughtUp" || event.case === "heartbeat") {
              setStatus("live");
              // Markers carry the cursor past changes the filter skipped: resume from there.
              if (message.cursor > ref.current.cursor) ref.current = { ...ref.current, cursor: message.cursor };
            }
          }
        } catch (err) {
          if (signal.aborted) return;
          const code = ConnectError.from(err).code;
          if (code === Code.Unauthenticated) return;
          // Retention dropped events after our cursor: only a fresh read is true now.
          if (code === Code.OutOfRange) return reload();
        }
        if (signal.aborted) return;
        setStatus("reconnecting");
        await sleep(backoff * (1 + Math.random() / 2), signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    })();
    return () => {
      abort.abort();
      if (flushTimer !== undefined) clearTimeout(flushTimer);
    };
    // The key stands for criteria, sort and rules.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, generation]);

  const loadMore = useCallback(() => {
    const s = session.current;
    const l = ref.current;
    if (!l.loaded || !l.nextToken || s.loadingMore || s.signal.aborted) return;
    s.loadingMore = true;
    setMoreError(undefined);
    api.flowRuns
      .listFlowRuns({ filter: s.criteria, sort: s.sort, pageSize: PAGE_SIZE, pageToken: l.nextToken }, { signal: s.signal })
      .then(
        (page) => {
          s.loadingMore = false;
          if (!s.signal.aborted) update((cur) => addPage(cur, page, false));
        },
        (err: unknown) => {
          s.loadingMore = false;
          if (!s.signal.aborted) setMoreError(err);
        },
      );
  }, [update]);

  return { list, error, moreError, status, loadMore, reload };
}
