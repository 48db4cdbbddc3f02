import { useCallback, useEffect, useRef, useState } from "preact/hooks";

/** How often the pages without a watch stream (deployments' slots, limits' slots) ask again. */
export const REFRESH_MS = 10_000;

/**
 * Calls `tick` every `ms` while the tab is visible, and at once when it becomes visible again.
 * The API has no watch for deployment slots or tag limits, so the pages that show them poll
 * modestly rather than go stale; a hidden tab costs the server nothing.
 */
export function useRefresh(tick: () => void, ms: number = REFRESH_MS): void {
  const tickRef = useRef(tick);
  tickRef.current = tick;
  useEffect(() => {
    if (typeof document === "undefined") return;
    let timer: ReturnType<typeof setInterval> | undefined;
    const start = () => {
      if (timer === undefined) timer = setInterval(() => tickRef.current(), ms);
    };
    const stop = () => {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    };
    const onVisibility = () => {
      if (document.visibilityState === "visible") {
        tickRef.current();
        start();
      } else stop();
    };
    if (document.visibilityState === "visible") start();
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      stop();
      document.removeEventListener("visibilitychange", onVisibility);
    };
  }, [ms]);
}

export interface Page<T> {
  items: T[];
  next: string;
}

export interface Paged<T> {
  items: T[];
  /** The first page has not come yet. */
  loading: boolean;
  /** A next page is on its way. */
  loadingMore: boolean;
  error: unknown;
  hasMore: boolean;
  loadMore: () => void;
  /** Asks again for every page shown so far and swaps them in at once (no flicker). */
  refresh: () => void;
}

/** A list read page by page with the API's page tokens; starts over when `deps` change. */
export function usePaged<T>(
  fetchPage: (token: string, signal: AbortSignal) => Promise<Page<T>>,
  deps: readonly unknown[],
): Paged<T> {
  const [state, setState] = useState<{ items: T[]; next: string; pages: number; error?: unknown; loading: boolean; loadingMore: boolean }>(
    { items: [], next: "", pages: 0, loading: true, loadingMore: false },
  );
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;
  const abortRef = useRef<AbortController | undefined>(undefined);
  const stateRef = useRef(state);
  stateRef.current = state;

  const load = useCallback((pages: number, append: boolean) => {
    abortRef.current?.abort();
    const abort = new AbortController();
    abortRef.current = abort;
    const from = append ? stateRef.current.next : "";
    const run = async () => {
      const items: T[] = append ? [...stateRef.current.items] : [];
      let token = from;
      let count = append ? stateRef.current.pages : 0;
      for (let i = 0; i < pages; i++) {
        const page = await fetchRef.current(token, abort.signal);
        items.push(...page.items);
        token = page.next;
        count++;
        if (!token) break;
      }
      return { items, next: token, pages: count };
    };
    run().then(
      (done) => abort.signal.aborted || setState({ ...done, loading: false, loadingMore: false }),
      (error: unknown) => abort.signal.aborted || setState((s) => ({ ...s, error, loading: false, loadingMore: false })),
    );
  }, []);

  useEffect(() => {
    setState((s) => ({ ...s, loading: true, error: undefined }));
    load(1, false);
    return () => abortRef.current?.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  const loadMore = useCallback(() => {
    if (!stateRef.current.next) return;
    setState((s) => ({ ...s, loadingMore: true }));
    load(1, true);
  }, [load]);
  const refresh = useCallback(() => {
    if (stateRef.current.loadingMore || stateRef.current.loading) return;
    load(Math.max(1, stateRef.current.pages), false);
  }, [load]);

  return {
    items: state.items,
    loading: state.loading,
    loadingMore: state.loadingMore,
    error: state.error,
    hasMore: state.next !== "",
    loadMore,
    refresh,
  };
}

/** The search box's text, and the same text once typing has paused (for the query). */
export function useDebounced<T>(value: T, ms = 250): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/** True once the element has come near the viewport (and stays true). */
export function useSeen(ref: { current: Element | null }): boolean {
  const [seen, setSeen] = useState(false);
  useEffect(() => {
    const el = ref.current;
    if (seen || !el) return;
    if (typeof IntersectionObserver === "undefined") {
      setSeen(true);
      return;
    }
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          setSeen(true);
          observer.disconnect();
        }
      },
      { rootMargin: "200px 0px" },
    );
    observer.observe(el);
    return () => observer.disconnect();
  }, [ref, seen]);
  return seen;
}
