import { useEffect, useRef, useState } from "preact/hooks";
import { type GraphInput, type GraphLayout, layoutGraph } from "./graphLayout";
import { LayoutQueue } from "./layoutQueue";

/** Below this many nodes a layout takes milliseconds: done at once, without a worker's hop. */
const INLINE = 80;

const queue = new LayoutQueue(() => new Worker(new URL("./layoutWorker.ts", import.meta.url), { type: "module" }));

export interface LaidOut {
  layout: GraphLayout | undefined;
  /** Where the shown layout was computed. */
  where: "inline" | "worker" | undefined;
  /** The layout failed even on the page's thread. */
  error: unknown;
}

function inline(input: GraphInput[]): LaidOut {
  try {
    return { layout: layoutGraph(input), where: "inline", error: undefined };
  } catch (error) {
    return { layout: undefined, where: undefined, error };
  }
}

/** The layout of a graph, recomputed only when `shape` changes; a big graph keeps showing its
 * previous layout while the new one is computed. If the worker fails, the graph is laid out
 * on the page's thread. */
export function useGraphLayout(input: GraphInput[], shape: string): LaidOut {
  const [state, setState] = useState<LaidOut>(() =>
    input.length <= INLINE ? inline(input) : { layout: undefined, where: undefined, error: undefined },
  );
  const inputRef = useRef(input);
  inputRef.current = input;
  const first = useRef(true);
  useEffect(() => {
    if (first.current && state.layout) {
      first.current = false;
      return;
    }
    first.current = false;
    const nodes = inputRef.current;
    if (nodes.length <= INLINE || typeof Worker === "undefined" || queue.failed) {
      setState(inline(nodes));
      return;
    }
    let current = true;
    const job = queue.layout(nodes);
    job.promise.then(
      (layout) => current && setState({ layout, where: "worker", error: undefined }),
      () => current && setState(inline(nodes)),
    );
    return () => {
      current = false;
      job.cancel();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);
  return state;
}
