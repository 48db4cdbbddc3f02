import { memo } from "preact/compat";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { GraphNode } from "../gen/runwire/v1/graph_pb";
import type { TaskRun } from "../gen/runwire/v1/task_run_pb";
import { stateLook } from "../lib/format";
import { fittingChars, NODE_HEIGHT } from "./graphLayout";
import { useGraphLayout } from "./useGraphLayout";

/** The shape of a graph: a graph whose states change but whose shape does not keeps its layout. */
function shapeKey(nodes: readonly GraphNode[]): string {
  return nodes.map((n) => `${n.id}<${n.upstreamDependencies.join(",")}`).join("|");
}

function clip(name: string, width: number): string {
  const room = fittingChars(width);
  return name.length <= room ? name : `${name.slice(0, Math.max(1, room - 1))}…`;
}

/** Memoized: the run page re-renders each second while a run's duration ticks; the graph only
 * when its nodes, states or selection change. */
export const TaskGraph = memo(function TaskGraph({
  nodes,
  tasks,
  selected,
  onSelect,
}: {
  nodes: readonly GraphNode[];
  tasks: ReadonlyMap<string, TaskRun>;
  selected: string | undefined;
  onSelect: (id: string) => void;
}) {
  const key = shapeKey(nodes);
  const input = useMemo(
    () => nodes.map((n) => ({ id: n.id, name: n.name, upstream: n.upstreamDependencies })),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [key],
  );
  const { layout, where, error } = useGraphLayout(input, key);
  // How often it has rendered, on its root as data-renders: the browser tests check that the
  // page's ticking clock leaves it alone.
  const renders = useRef(0);
  renders.current++;
  const [zoom, setZoom] = useState<number | undefined>(undefined);
  const scroller = useRef<HTMLDivElement>(null);
  const byId = useMemo(() => new Map(nodes.map((n) => [n.id, n])), [nodes]);
  const [room, setRoom] = useState(0);

  // Until the person zooms, a wide graph is shrunk to fit the panel (down to a legible size).
  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setRoom(el.clientWidth);
    measure();
    const observer = typeof ResizeObserver === "undefined" ? undefined : new ResizeObserver(measure);
    observer?.observe(el);
    return () => observer?.disconnect();
  }, [layout !== undefined]);
  const fit = layout && room && layout.width > room ? Math.max(0.6, room / layout.width) : 1;
  const scale = zoom ?? fit;

  // A task chosen in the table is brought into view here.
  useEffect(() => {
    if (!selected || !scroller.current) return;
    const el = scroller.current.querySelector(`[data-task-id="${CSS.escape(selected)}"]`);
    (el as SVGElement | null)?.scrollIntoView?.({ block: "nearest", inline: "nearest" });
  }, [selected]);

  if (nodes.length === 0) return <p class="empty">This run has no task runs yet.</p>;
  if (!layout) {
    return error === undefined ? (
      <p class="empty">Laying out {nodes.length} task runs…</p>
    ) : (
      <p class="empty" role="alert">
        The graph of {nodes.length} task runs could not be laid out; the table below lists them.
      </p>
    );
  }
  const near = new Set<string>();
  if (selected) {
    for (const e of layout.edges) if (e.from === selected || e.to === selected) near.add(`${e.from}>${e.to}`);
  }
  return (
    <div class="tg" data-renders={renders.current}>
      <div class="tg-tools">
        <span class="muted">{nodes.length} task runs</span>
        <span class="tg-zoom" role="group" aria-label="Zoom">
          <button type="button" aria-label="Zoom out" onClick={() => setZoom(Math.max(0.25, scale / 1.25))}>
            −
          </button>
          <button type="button" onClick={() => setZoom(zoom === undefined ? 1 : undefined)} title={zoom === undefined ? "Actual size" : "Fit"}>
            {Math.round(scale * 100)}%
          </button>
          <button type="button" aria-label="Zoom in" onClick={() => setZoom(Math.min(2, scale * 1.25))}>
            +
          </button>
        </span>
      </div>
      <div class="tg-scroll" ref={scroller} data-testid="graph" data-layout={where}>
        <svg
          width={layout.width * scale}
          height={layout.height * scale}
          viewBox={`0 0 ${layout.width} ${layout.height}`}
          role="group"
          aria-label="Task run dependency graph"
        >
          <defs>
            <marker id="tg-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto">
              <path d="M0,0 L8,4 L0,8 z" class="tg-arrow" />
            </marker>
          </defs>
          <g class="tg-edges">
            {layout.edges.map((e) => (
              <path
                key={`${e.from}>${e.to}`}
                d={e.path}
                class={near.has(`${e.from}>${e.to}`) ? "tg-edge near" : "tg-edge"}
                marker-end="url(#tg-arrow)"
              />
            ))}
          </g>
          {layout.nodes.map((n) => {
            const state = tasks.get(n.id)?.state ?? byId.get(n.id)?.state;
            const look = stateLook(state?.type);
            const label = state?.name || look.label;
            return (
              <g
                key={n.id}
                class={`tg-node tone-${look.tone}${selected === n.id ? " selected" : ""}`}
                transform={`translate(${n.x},${n.y})`}
                data-testid="graph-node"
                data-task-id={n.id}
                data-state={look.tone}
                tabIndex={0}
                role="button"
                aria-pressed={selected === n.id}
                aria-label={`${n.name}: ${label}`}
                onClick={() => onSelect(n.id)}
                onKeyDown={(ev) => {
                  if (ev.key === "Enter" || ev.key === " ") {
                    ev.preventDefault();
                    onSelect(n.id);
                  }
                }}
              >
                <title>{`${n.name} — ${label}`}</title>
                <rect width={n.width} height={NODE_HEIGHT} rx="6" />
                <rect class="tg-stripe" width="4" height={NODE_HEIGHT} rx="2" />
                <text x="14" y={NODE_HEIGHT / 2} dominant-baseline="central" class="tg-mark">
                  {look.mark}
                </text>
                <text x="28" y={NODE_HEIGHT / 2} dominant-baseline="central" class="tg-name">
                  {clip(n.name, n.width)}
                </text>
              </g>
            );
          })}
        </svg>
      </div>
    </div>
  );
});
