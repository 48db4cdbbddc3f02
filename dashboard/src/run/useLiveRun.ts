// The run page's one connection to the server: GetFlowRun for the header at once, one
// WatchFlowRun stream for every change (run states, task-run states, logs), and the lists the
// stream does not replay (states, task runs, graph) read once it has caught up.
import { Code, ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useReducer, useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { GraphNode } from "../gen/runwire/v1/graph_pb";
import { type State } from "../gen/runwire/v1/state_pb";
import type { TaskRun } from "../gen/runwire/v1/task_run_pb";
import { StreamEnd_Reason, type WatchFlowRunResponse } from "../gen/runwire/v1/watch_pb";
import { initialLiveRun, type LiveRun, reduce } from "./liveRun";

export type Connection = "connecting" | "live" | "reconnecting" | "deleted";

export interface LiveRunView {
  live: LiveRun;
  /** GetFlowRun failed (NotFound: no such run). */
  runError: unknown;
  /** A list call failed; the page offers to try again. */
  listError: unknown;
  graph: GraphNode[] | undefined;
  connection: Connection;
  /** When the stream will be tried again, while reconnecting. */
  retryAt: number | undefined;
  retry: () => void;
  refreshRun: () => void;
}

/** How long to wait before reconnecting after the n-th failure in a row: 0.5 s doubling to 15 s. */
export function backoff(failures: number): number {
  return Math.min(15_000, 500 * 2 ** Math.max(0, failures - 1));
}

const GRAPH_DEBOUNCE = 300;
const RUN_DEBOUNCE = 400;
/** Events of one network burst are applied together: one render, not one per log line. */
const BATCH = 25;

export function useLiveRun(id: string): LiveRunView {
  const [live, dispatch] = useReducer(reduce, undefined, initialLiveRun);
  const [runError, setRunError] = useState<unknown>(undefined);
  const [listError, setListError] = useState<unknown>(undefined);
  const [graph, setGraph] = useState<GraphNode[] | undefined>(undefined);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [retryAt, setRetryAt] = useState<number | undefined>(undefined);
  const [generation, setGeneration] = useState(0);
  const liveRef = useRef(live);
  liveRef.current = live;
  const scheduleRef = useRef<{ run: () => void; graph: () => void }>({ run: () => {}, graph: () => {} });

  useEffect(() => {
    const abort = new AbortController();
    const { signal } = abort;
    const timers = new Set<ReturnType<typeof setTimeout>>();
    const later = (ms: number, fn: () => void) => {
      const t = setTimeout(() => {
        timers.delete(t);
        if (!signal.aborted) fn();
      }, ms);
      timers.add(t);
      return t;
    };
    const debounced = (ms: number, fn: () => void) => {
      let pending: ReturnType<typeof setTimeout> | undefined;
      return () => {
        if (pending !== undefined) return;
        pending = later(ms, () => {
          pending = undefined;
          fn();
        });
      };
    };

    const loadRun = () =>
      api.flowRuns.getFlowRun({ flowRunId: id }, { signal }).then(
        (r) => {
          if (!r.flowRun) return;
          setRunError(undefined);
          dispatch({ type: "run", run: r.flowRun });
        },
        (err: unknown) => signal.aborted || setRunError(err),
      );
    const refreshRun = debounced(RUN_DEBOUNCE, loadRun);

    const loadGraph = () =>
      api.flowRuns.getFlowRunGraph({ flowRunId: id }, { signal }).then(
        (r) => setGraph(r.nodes),
        (err: unknown) => signal.aborted || setListError(err),
      );

    const loadLists = async () => {
      try {
        const states: State[] = [];
        let token = "";
        do {
          const page = await api.flowRuns.listFlowRunStates({ flowRunId: id, pageSize: 200, pageToken: token }, { signal });
          states.push(...page.states);
          token = page.nextPageToken;
        } while (token);
        dispatch({ type: "states", states });
        await Promise.all([loadGraph(), loadTasks()]);
        setListError(undefined);
      } catch (err) {
        if (!signal.aborted) setListError(err);
      }
    };

    const loadTasks = async () => {
      let token = "";
      do {
        const page = await api.taskRuns.listTaskRuns(
          { filter: { flowRuns: { id: { anyOf: { values: [id] } } } }, pageSize: 200, pageToken: token },
          { signal },
        );
        dispatch({ type: "tasks", tasks: page.taskRuns });
        token = page.nextPageToken;
      } while (token);
    };

    // Task runs the page has not seen: their rows and the graph's new shape, once a burst of
    // new tasks has settled.
    const fetchUnknown = debounced(GRAPH_DEBOUNCE, () => {
      const unknown = [...liveRef.current.unknownTasks];
      void loadGraph();
      if (unknown.length > 20) {
        loadTasks().catch((err: unknown) => signal.aborted || setListError(err));
        return;
      }
      for (const taskRunId of unknown) {
        api.taskRuns.getTaskRun({ taskRunId }, { signal }).then(
          (r) => r.taskRun && dispatch({ type: "tasks", tasks: [r.taskRun as TaskRun] }),
          () => {}, // deleted since: the row stays as the event described it
        );
      }
    });
    scheduleRef.current = { run: refreshRun, graph: fetchUnknown };

    void loadRun();

    let cursor: bigint | undefined;
    let listed = false;
    let failures = 0;
    let finishedAt: bigint | undefined;

    const watch = async () => {
      let buffer: WatchFlowRunResponse[] = [];
      let flush: ReturnType<typeof setTimeout> | undefined;
      const flushNow = () => {
        if (flush !== undefined) clearTimeout(flush);
        flush = undefined;
        if (buffer.length) dispatch({ type: "events", events: buffer });
        buffer = [];
      };
      let ended: StreamEnd_Reason | undefined;
      try {
        dispatch({ type: "connected" });
        const stream = api.flowRuns.watchFlowRun(
          { flowRunId: id, includeTaskRuns: true, afterCursor: cursor },
          { signal },
        );
        for await (const ev of stream) {
          if (ev.cursor > (cursor ?? -1n)) cursor = ev.cursor;
          const e = ev.event;
          if (e.case === "heartbeat") continue;
          buffer.push(ev);
          if (e.case === "flowRunState") refreshRun();
          if (e.case === "taskRunState" && !liveRef.current.tasks.has(e.value.taskRunId)) fetchUnknown();
          if (e.case === "caughtUp") {
            failures = 0;
            setRetryAt(undefined);
            flushNow();
            setConnection("live");
            if (!listed) {
              listed = true;
              void loadLists();
            }
            continue;
          }
          if (e.case === "end") {
            ended = e.value.reason;
            flushNow();
            continue;
          }
          if (flush === undefined) flush = setTimeout(flushNow, BATCH);
        }
        flushNow();
      } catch (err) {
        flushNow();
        if (signal.aborted) return;
        const code = ConnectError.from(err).code;
        if (code === Code.NotFound) {
          setConnection("deleted");
          return;
        }
        if (code === Code.OutOfRange) {
          // Retention pruned past the cursor: start over from the stream's snapshot.
          cursor = undefined;
          dispatch({ type: "reset" });
        }
        failures++;
      }
      if (signal.aborted) return;
      if (ended === StreamEnd_Reason.RUN_DELETED) {
        setConnection("deleted");
        return;
      }
      if (ended === StreamEnd_Reason.RUN_FINISHED) {
        // The stream ends with the run's terminal state, but a worker may still flush logs
        // after it, and the run may be retried: a stream resumed after the terminal state
        // replays those and then follows the run, so nothing written later is missed.
        refreshRun();
        const again = cursor === finishedAt;
        finishedAt = cursor;
        later(again ? backoff(++failures) : 0, () => void watch());
        return;
      }
      if (ended !== StreamEnd_Reason.SERVER_SHUTDOWN && failures === 0) failures = 1;
      const wait = backoff(Math.max(1, failures));
      setConnection("reconnecting");
      setRetryAt(Date.now() + wait);
      later(wait, () => void watch());
    };
    void watch();

    return () => {
      abort.abort();
      for (const t of timers) clearTimeout(t);
    };
  }, [id, generation]);

  const retry = useCallback(() => setGeneration((g) => g + 1), []);
  const refreshRun = useCallback(() => scheduleRef.current.run(), []);
  return { live, runError, listError, graph, connection, retryAt, retry, refreshRun };
}
