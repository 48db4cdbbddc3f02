// Lays out task graphs off the page's thread: a dense graph of hundreds of task runs takes dagre
// seconds, and the page must stay responsive meanwhile. A layout that throws is answered with
// its error, so the page can lay it out (or say it failed) itself.
import { type GraphInput, layoutGraph } from "./graphLayout";

self.onmessage = (e: MessageEvent<{ seq: number; input: GraphInput[] }>) => {
  try {
    postMessage({ seq: e.data.seq, layout: layoutGraph(e.data.input) });
  } catch (err) {
    postMessage({ seq: e.data.seq, error: err instanceof Error ? err.message : String(err) });
  }
};
