import { useEffect, useRef, useState } from "preact/hooks";
import { type GraphInput, type GraphLayout, layoutGraph } from "./graphLayout";

/** Below this many nodes a layout takes milliseconds: done at once, without a worker's hop. */
const INLINE = 80;

let worker: Worker | undefined;
let seq = 0;
const waiting = new Map<number, (layout: GraphLayout) => void>();

function layoutInWorker(input: GraphInput[]): Promise<GraphLayout> {
  if (!worker) {
    worker = new Worker(new URL("./layoutWorker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (e: MessageEvent<{ seq: number; layout: GraphLayout }>) => {
      waiting.get(e.data.seq)?.(e.data.layout);
      waiting.delete(e.data.seq);
    };
  }
  const id = ++seq;
  return new Promise((resolve) => {
    waiting.set(id, resolve);
    worker!.postMessage({ seq: id, input });
  });
}

/** The layout of a graph, recomputed only when `shape` changes; a big graph keeps showing its
 * previous layout while the new one is computed. */
export function useGraphLayout(input: GraphInput[], shape: string): GraphLayout | undefined {
  const [layout, setLayout] = useState<GraphLayout | undefined>(() =>
    input.length <= INLINE ? layoutGraph(input) : undefined,
  );
  const inputRef = useRef(input);
  inputRef.current = input;
  const first = useRef(true);
  useEffect(() => {
    if (first.current && layout) {
      first.current = false;
      return;
    }
    first.current = false;
    const nodes = inputRef.current;
    if (nodes.length <= INLINE || typeof Worker === "undefined") {
      setLayout(layoutGraph(nodes));
      return;
    }
    let current = true;
    void layoutInWorker(nodes).then((l) => current && setLayout(l));
    return () => {
      current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);
  return layout;
}
