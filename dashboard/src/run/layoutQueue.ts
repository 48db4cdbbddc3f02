// Layout jobs for the worker, one at a time: a job whose graph shape is outdated before the
// worker starts it is dropped, and a worker that fails settles every job waiting on it (the
// page then lays out on its own thread), so no graph waits for ever.
import type { GraphInput, GraphLayout } from "./graphLayout";

/** What the queue needs of a Worker (a fake one in unit tests). */
export interface LayoutWorker {
  onmessage: ((e: MessageEvent<{ seq: number; layout?: GraphLayout; error?: string }>) => void) | null;
  onerror: ((e: ErrorEvent) => void) | null;
  postMessage(message: { seq: number; input: GraphInput[] }): void;
  terminate(): void;
}

export interface LayoutJob {
  promise: Promise<GraphLayout>;
  /** The graph has changed shape: drop the job if the worker has not started it. */
  cancel(): void;
}

interface Waiting {
  seq: number;
  input: GraphInput[];
  resolve: (layout: GraphLayout) => void;
  reject: (err: Error) => void;
  cancelled: boolean;
}

export class LayoutQueue {
  private worker: LayoutWorker | undefined;
  private broken = false;
  private seq = 0;
  private running: Waiting | undefined;
  private queued: Waiting[] = [];

  constructor(private readonly start: () => LayoutWorker) {}

  /** Whether the worker has failed (later layouts are done inline). */
  get failed(): boolean {
    return this.broken;
  }

  /** Jobs not yet answered (for tests). */
  get size(): number {
    return this.queued.length + (this.running ? 1 : 0);
  }

  layout(input: GraphInput[]): LayoutJob {
    let job!: Waiting;
    const promise = new Promise<GraphLayout>((resolve, reject) => {
      job = { seq: ++this.seq, input, resolve, reject, cancelled: false };
    });
    if (this.broken) {
      job.reject(new Error("the layout worker failed"));
    } else {
      // Only the newest shape is worth laying out: older queued jobs are dropped.
      for (const old of this.queued) old.reject(new Error("outdated"));
      this.queued = [job];
      this.pump();
    }
    return {
      promise,
      cancel: () => {
        job.cancelled = true;
        const at = this.queued.indexOf(job);
        if (at >= 0) {
          this.queued.splice(at, 1);
          job.reject(new Error("outdated"));
        }
      },
    };
  }

  private pump(): void {
    if (this.running || this.broken) return;
    const job = this.queued.shift();
    if (!job) return;
    try {
      const worker = this.ensure();
      this.running = job;
      worker.postMessage({ seq: job.seq, input: job.input });
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)), job);
    }
  }

  private ensure(): LayoutWorker {
    if (this.worker) return this.worker;
    const worker = this.start();
    worker.onmessage = (e) => {
      const job = this.running;
      if (!job || job.seq !== e.data.seq) return;
      this.running = undefined;
      if (e.data.layout) job.resolve(e.data.layout);
      else job.reject(new Error(e.data.error ?? "the layout failed"));
      this.pump();
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      this.fail(new Error(e.message || "the layout worker failed"));
    };
    this.worker = worker;
    return worker;
  }

  private fail(err: Error, job?: Waiting): void {
    this.broken = true;
    this.worker?.terminate();
    this.worker = undefined;
    const settle = [...(job ? [job] : []), ...(this.running ? [this.running] : []), ...this.queued];
    this.running = undefined;
    this.queued = [];
    for (const j of settle) j.reject(err);
  }
}
