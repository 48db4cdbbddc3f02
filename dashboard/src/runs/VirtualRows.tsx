// A table that keeps only the rows in view in the DOM: rows have one fixed height, so a row's
// place is arithmetic, and scrolling ten thousand rows costs what scrolling forty does.
import type { ComponentChildren, VNode } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

export interface VirtualRowsProps<T> {
  items: readonly T[];
  /** Rows the table will have once every page is read (for aria-rowcount); items.length when unknown. */
  total?: number;
  rowHeight: number;
  /** How many columns a row has (the spacers span them all: a wider span would add columns). */
  columns: number;
  /** The table's <colgroup> and <thead>. */
  head: ComponentChildren;
  row: (item: T, index: number, active: boolean) => VNode;
  /** The keyboard's row, or -1. */
  active: number;
  /** Called when fewer than `ahead` rows are left below the view. */
  onNearEnd?: () => void;
  ahead?: number;
  label: string;
  class?: string;
}

const OVERSCAN = 8;

export function VirtualRows<T>(props: VirtualRowsProps<T>) {
  const { items, rowHeight, active, onNearEnd, ahead = 100 } = props;
  const scroller = useRef<HTMLDivElement>(null);
  const [view, setView] = useState({ top: 0, height: 0 });
  const frame = useRef(0);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const read = () => {
      frame.current = 0;
      setView({ top: el.scrollTop, height: el.clientHeight });
    };
    // One state update per frame, however many scroll events the frame had.
    const onScroll = () => {
      if (!frame.current) frame.current = requestAnimationFrame(read);
    };
    read();
    el.addEventListener("scroll", onScroll, { passive: true });
    const observer = new ResizeObserver(onScroll);
    observer.observe(el);
    return () => {
      el.removeEventListener("scroll", onScroll);
      observer.disconnect();
      if (frame.current) cancelAnimationFrame(frame.current);
    };
  }, []);

  // The header row sits above the rows, inside the scroller.
  const headHeight = rowHeight;
  const bodyTop = Math.max(0, view.top - headHeight);
  const first = Math.max(0, Math.floor(bodyTop / rowHeight) - OVERSCAN);
  const shown = Math.ceil((view.height || rowHeight * 20) / rowHeight) + OVERSCAN * 2;
  const last = Math.min(items.length, first + shown);

  useEffect(() => {
    if (onNearEnd && items.length && items.length - last < ahead) onNearEnd();
  }, [last, items.length, onNearEnd, ahead]);

  // The keyboard's row stays in view, and has the focus so screen readers follow it.
  useEffect(() => {
    const el = scroller.current;
    if (!el || active < 0) return;
    const top = headHeight + active * rowHeight;
    if (top < el.scrollTop + headHeight) el.scrollTop = top - headHeight;
    else if (top + rowHeight > el.scrollTop + el.clientHeight) el.scrollTop = top + rowHeight - el.clientHeight;
    requestAnimationFrame(() => {
      const row = el.querySelector<HTMLElement>(`tr[aria-rowindex="${active + 2}"]`);
      if (row && document.activeElement !== row && !row.contains(document.activeElement)) row.focus({ preventScroll: true });
    });
  }, [active, rowHeight, headHeight]);

  const rows: VNode[] = [];
  for (let i = first; i < last; i++) rows.push(props.row(items[i], i, i === active));

  return (
    <div class={`vrows ${props.class ?? ""}`} ref={scroller} data-testid="runs-scroller" data-loaded={items.length}>
      <table class="grid" aria-label={props.label} aria-rowcount={(props.total ?? items.length) + 1}>
        {props.head}
        <tbody>
          <Spacer height={first * rowHeight} columns={props.columns} />
          {rows}
          <Spacer height={(items.length - last) * rowHeight} columns={props.columns} />
        </tbody>
      </table>
    </div>
  );
}

function Spacer({ height, columns }: { height: number; columns: number }) {
  if (height <= 0) return null;
  return (
    <tr class="vrows-spacer" aria-hidden="true">
      <td colSpan={columns} style={{ height: `${height}px` }} />
    </tr>
  );
}
