// Lays out task graphs off the page's thread: a dense graph of hundreds of task runs takes dagre
// seconds, and the page must stay responsive meanwhile.
import { type GraphInput, layoutGraph } from "./graphLayout";

self.onmessage = (e: MessageEvent<{ seq: number; input: GraphInput[] }>) => {
  postMessage({ seq: e.data.seq, layout: layoutGraph(e.data.input) });
};
