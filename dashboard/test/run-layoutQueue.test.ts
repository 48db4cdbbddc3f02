import { describe, expect, it } from "vitest";
import type { GraphInput, GraphLayout } from "../src/run/graphLayout";
import { LayoutQueue, type LayoutWorker } from "../src/run/layoutQueue";

class FakeWorker implements LayoutWorker {
  onmessage: LayoutWorker["onmessage"] = null;
  onerror: LayoutWorker["onerror"] = null;
  posted: { seq: number; input: GraphInput[] }[] = [];
  terminated = false;
  postMessage(message: { seq: number; input: GraphInput[] }) {
    this.posted.push(message);
  }
  terminate() {
    this.terminated = true;
  }
  answer(layout?: GraphLayout, error?: string) {
    const { seq } = this.posted[this.posted.length - 1];
    this.onmessage?.({ data: { seq, layout, error } } as MessageEvent);
  }
  crash() {
    this.onerror?.({ message: "dagre threw", preventDefault() {} } as ErrorEvent);
  }
}

const graph = (n: number): GraphInput[] => Array.from({ length: n }, (_, i) => ({ id: `t${i}`, name: `t${i}`, upstream: [] }));
const LAYOUT: GraphLayout = { nodes: [], edges: [], width: 1, height: 1 };

function setup() {
  const workers: FakeWorker[] = [];
  const queue = new LayoutQueue(() => {
    const w = new FakeWorker();
    workers.push(w);
    return w;
  });
  return { queue, workers };
}

describe("LayoutQueue", () => {
  it("answers a job with the worker's layout", async () => {
    const { queue, workers } = setup();
    const job = queue.layout(graph(3));
    workers[0].answer(LAYOUT);
    await expect(job.promise).resolves.toBe(LAYOUT);
    expect(queue.size).toBe(0);
  });

  it("settles every waiting job when the worker fails, and is failed from then on", async () => {
    const { queue, workers } = setup();
    const running = queue.layout(graph(3));
    const queued = queue.layout(graph(4));
    workers[0].crash();
    await expect(running.promise).rejects.toThrow("dagre threw");
    await expect(queued.promise).rejects.toThrow("dagre threw");
    expect(workers[0].terminated).toBe(true);
    expect(queue.failed).toBe(true);
    expect(queue.size).toBe(0);
    await expect(queue.layout(graph(2)).promise).rejects.toThrow();
  });

  it("rejects a job whose layout threw in the worker", async () => {
    const { queue, workers } = setup();
    const job = queue.layout(graph(3));
    workers[0].answer(undefined, "no room");
    await expect(job.promise).rejects.toThrow("no room");
    expect(queue.failed).toBe(false);
  });

  it("drops jobs for shapes outdated before the worker starts them", async () => {
    const { queue, workers } = setup();
    const a = queue.layout(graph(1));
    const b = queue.layout(graph(2));
    const c = queue.layout(graph(3));
    // The worker is busy with a; b was replaced by c before it started.
    await expect(b.promise).rejects.toThrow("outdated");
    expect(workers[0].posted.map((m) => m.input.length)).toEqual([1]);
    workers[0].answer(LAYOUT);
    await a.promise;
    expect(workers[0].posted.map((m) => m.input.length)).toEqual([1, 3]);
    // A cancelled job that has not started is never posted.
    const d = queue.layout(graph(4));
    d.cancel();
    await expect(d.promise).rejects.toThrow("outdated");
    workers[0].answer(LAYOUT);
    await c.promise;
    expect(workers[0].posted.map((m) => m.input.length)).toEqual([1, 3]);
    expect(queue.size).toBe(0);
  });
});
