// One API call's life in a component: loading, its answer or its error, and a way to call again.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

export interface CallState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Calls `fn` when `deps` change; an answer that arrives after newer deps is dropped. */
export function useCall<T>(fn: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): CallState<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [generation, setGeneration] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    const abort = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    fnRef.current(abort.signal).then(
      (data) => abort.signal.aborted || setState({ data, loading: false }),
      (error: unknown) => abort.signal.aborted || setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}
