import { describe, expect, it } from "vitest";
import { layoutGraph, nodeWidth, type PlacedNode } from "../src/run/graphLayout";

function overlaps(a: PlacedNode, b: PlacedNode): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

const diamond = [
  { id: "a", name: "extract", upstream: [] },
  { id: "b", name: "clean", upstream: ["a"] },
  { id: "c", name: "enrich", upstream: ["a"] },
  { id: "d", name: "load", upstream: ["b", "c"] },
];

describe("layoutGraph", () => {
  it("places a diamond left to right", () => {
    const g = layoutGraph(diamond);
    const at = new Map(g.nodes.map((n) => [n.id, n]));
    expect(g.nodes.map((n) => n.id).sort()).toEqual(["a", "b", "c", "d"]);
    expect(at.get("a")!.x + at.get("a")!.width).toBeLessThanOrEqual(at.get("b")!.x);
    expect(at.get("b")!.x).toBe(at.get("c")!.x);
    expect(at.get("b")!.y).not.toBe(at.get("c")!.y);
    expect(at.get("c")!.x + at.get("c")!.width).toBeLessThanOrEqual(at.get("d")!.x);
    for (const n of g.nodes) {
      expect(n.x).toBeGreaterThanOrEqual(0);
      expect(n.y).toBeGreaterThanOrEqual(0);
      expect(n.x + n.width).toBeLessThanOrEqual(g.width);
      expect(n.y + n.height).toBeLessThanOrEqual(g.height);
    }
  });

  it("draws one edge per dependency, from the upstream box to the downstream one", () => {
    const g = layoutGraph(diamond);
    expect(g.edges.map((e) => `${e.from}>${e.to}`).sort()).toEqual(["a>b", "a>c", "b>d", "c>d"]);
    const a = g.nodes.find((n) => n.id === "a")!;
    const ab = g.edges.find((e) => e.from === "a" && e.to === "b")!;
    expect(ab.path.startsWith(`M${a.x + a.width},`)).toBe(true);
  });

  it("skips dependencies on task runs it does not have, and repeats", () => {
    const g = layoutGraph([
      { id: "a", name: "a", upstream: [] },
      { id: "b", name: "b", upstream: ["a", "a", "elsewhere", "b"] },
    ]);
    expect(g.edges.map((e) => `${e.from}>${e.to}`)).toEqual(["a>b"]);
  });

  it("keeps boxes apart in a wide graph", () => {
    const nodes = [{ id: "root", name: "root", upstream: [] as string[] }];
    for (let i = 0; i < 40; i++) nodes.push({ id: `n${i}`, name: `task_number_${i}`, upstream: ["root"] });
    for (let i = 0; i < 40; i++) nodes.push({ id: `m${i}`, name: `m${i}`, upstream: [`n${i}`, `n${(i + 1) % 40}`] });
    const g = layoutGraph(nodes);
    for (let i = 0; i < g.nodes.length; i++) {
      for (let j = i + 1; j < g.nodes.length; j++) expect(overlaps(g.nodes[i], g.nodes[j])).toBe(false);
    }
  });

  it("sizes boxes to their names within bounds, and lays out nothing as nothing", () => {
    expect(nodeWidth("a")).toBeLessThan(nodeWidth("a_much_longer_task_name"));
    expect(nodeWidth("x".repeat(500))).toBe(nodeWidth("y".repeat(400)));
    expect(layoutGraph([])).toEqual({ nodes: [], edges: [], width: 0, height: 0 });
  });
});
