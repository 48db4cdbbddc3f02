// Where the task graph's boxes and arrows go: dagre's layered layout, left to right, as a pure
// function of the nodes and their dependencies (the page lays out once per graph, not per event).
import dagre from "@dagrejs/dagre";

export interface GraphInput {
  id: string;
  name: string;
  upstream: readonly string[];
}

export interface PlacedNode {
  id: string;
  name: string;
  /** Top-left corner and size, in SVG units. */
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PlacedEdge {
  from: string;
  to: string;
  /** The SVG path, from the upstream box's right side to the downstream box's left side. */
  path: string;
}

export interface GraphLayout {
  nodes: PlacedNode[];
  edges: PlacedEdge[];
  width: number;
  height: number;
}

export const NODE_HEIGHT = 30;
const MIN_WIDTH = 96;
const MAX_WIDTH = 220;
/** Room for the state mark before the name and the padding after it. */
const CHROME = 34;
const CHAR = 7;
const MARGIN = 12;

/** A box wide enough for its name (long names are cut with an ellipsis when drawn). */
export function nodeWidth(name: string): number {
  return Math.max(MIN_WIDTH, Math.min(MAX_WIDTH, CHROME + name.length * CHAR));
}

/** How many characters of a name fit its box. */
export function fittingChars(width: number): number {
  return Math.floor((width - CHROME) / CHAR);
}

export function layoutGraph(input: readonly GraphInput[]): GraphLayout {
  if (input.length === 0) return { nodes: [], edges: [], width: 0, height: 0 };
  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: "LR", nodesep: 12, ranksep: 48, marginx: MARGIN, marginy: MARGIN });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(input.map((n) => n.id));
  for (const n of input) g.setNode(n.id, { width: nodeWidth(n.name), height: NODE_HEIGHT });
  const edges: { from: string; to: string }[] = [];
  for (const n of input) {
    for (const up of new Set(n.upstream)) {
      // A dependency on a task run of another flow run (or one deleted) has no box here.
      if (!ids.has(up) || up === n.id) continue;
      g.setEdge(up, n.id);
      edges.push({ from: up, to: n.id });
    }
  }
  dagre.layout(g);
  const placed = new Map<string, PlacedNode>();
  for (const n of input) {
    const box = g.node(n.id);
    placed.set(n.id, {
      id: n.id,
      name: n.name,
      x: box.x - box.width / 2,
      y: box.y - box.height / 2,
      width: box.width,
      height: box.height,
    });
  }
  const graph = g.graph();
  return {
    nodes: [...placed.values()],
    edges: edges.map((e) => ({ ...e, path: edgePath(placed.get(e.from)!, placed.get(e.to)!) })),
    width: Math.ceil(graph.width ?? 0),
    height: Math.ceil(graph.height ?? 0),
  };
}

/** A smooth curve between the boxes' facing sides: calmer than dagre's polylines in a dense DAG. */
function edgePath(from: PlacedNode, to: PlacedNode): string {
  const x1 = from.x + from.width;
  const y1 = from.y + from.height / 2;
  const x2 = to.x;
  const y2 = to.y + to.height / 2;
  const bend = Math.max(16, (x2 - x1) / 2);
  const r = (v: number) => Math.round(v * 10) / 10;
  return `M${r(x1)},${r(y1)} C${r(x1 + bend)},${r(y1)} ${r(x2 - bend)},${r(y2)} ${r(x2)},${r(y2)}`;
}
