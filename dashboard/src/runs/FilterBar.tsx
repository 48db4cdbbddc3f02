import { useEffect, useRef, useState } from "preact/hooks";
import type { Deployment } from "../gen/runwire/v1/deployment_pb";
import type { Flow } from "../gen/runwire/v1/flow_pb";
import { RANGE_LABELS, RANGES, type RangeKey, type RunsQuery, SORTS } from "./query";

const DEBOUNCE_MS = 250;

export interface FilterBarProps {
  query: RunsQuery;
  flows: readonly Flow[];
  deployments: readonly Deployment[];
  /** `replace` for the later changes of one typing session, so history keeps one entry per search. */
  onChange: (next: RunsQuery, replace?: boolean) => void;
}

export function FilterBar({ query, flows, deployments, onChange }: FilterBarProps) {
  const [text, setText] = useState(query.q);
  const typed = useRef(query.q);
  // Whether this typing session has made its history entry: its first change pushes one (Back
  // returns to the URL before the search), later ones replace it.
  const searching = useRef(false);
  // Back and forward change the URL under the box: follow it, unless it is our own echo.
  useEffect(() => {
    if (query.q !== typed.current) {
      typed.current = query.q;
      searching.current = false;
      setText(query.q);
    }
  }, [query.q]);
  // Live updates re-render the bar often; the pending search must outlive those renders.
  const latest = useRef({ query, onChange });
  latest.current = { query, onChange };
  useEffect(() => {
    if (text.trim() === latest.current.query.q) return;
    const t = setTimeout(() => {
      typed.current = text.trim();
      const replace = searching.current;
      searching.current = true;
      latest.current.onChange({ ...latest.current.query, q: text.trim() }, replace);
    }, DEBOUNCE_MS);
    return () => clearTimeout(t);
  }, [text]);

  const [tag, setTag] = useState("");
  const addTag = () => {
    const value = tag.trim();
    setTag("");
    if (value && !query.tags.includes(value)) onChange({ ...query, tags: [...query.tags, value] });
  };
  const shownDeployments = query.flow ? deployments.filter((d) => d.flowId === query.flow) : deployments;
  const withSelected = <T extends { id: string }>(list: readonly T[], id: string, make: () => T): readonly T[] =>
    !id || list.some((x) => x.id === id) ? list : [...list, make()];

  return (
    <div class="filter-bar" role="search" aria-label="Filter runs">
      <input
        type="search"
        class="filter-search"
        data-search
        placeholder="Search run names  /"
        aria-label="Search run names"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => e.key === "Escape" && (e.currentTarget.blur(), setText(""))}
        onBlur={() => {
          searching.current = false;
        }}
      />
      <select
        aria-label="Flow"
        value={query.flow}
        onChange={(e) => onChange({ ...query, flow: e.currentTarget.value, deployment: "" })}
      >
        <option value="">All flows</option>
        {withSelected(flows, query.flow, () => ({ id: query.flow, name: query.flow }) as Flow).map((f) => (
          <option key={f.id} value={f.id}>
            {f.name}
          </option>
        ))}
      </select>
      <select
        aria-label="Deployment"
        value={query.deployment}
        onChange={(e) => onChange({ ...query, deployment: e.currentTarget.value })}
      >
        <option value="">All deployments</option>
        {withSelected(shownDeployments, query.deployment, () => ({ id: query.deployment, name: query.deployment }) as Deployment).map(
          (d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ),
        )}
      </select>
      <div class="tag-input">
        {query.tags.map((t) => (
          <button
            key={t}
            type="button"
            class="tag removable"
            aria-label={`Remove tag filter ${t}`}
            onClick={() => onChange({ ...query, tags: query.tags.filter((x) => x !== t) })}
          >
            {t} <span aria-hidden="true">×</span>
          </button>
        ))}
        <input
          type="text"
          aria-label="Filter by tag (Enter adds)"
          placeholder={query.tags.length ? "" : "Tag…"}
          value={tag}
          onInput={(e) => setTag(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" || e.key === ",") {
              e.preventDefault();
              addTag();
            } else if (e.key === "Backspace" && !tag && query.tags.length) {
              onChange({ ...query, tags: query.tags.slice(0, -1) });
            }
          }}
          onBlur={addTag}
        />
      </div>
      <select
        aria-label="Time range"
        value={query.range}
        onChange={(e) => onChange({ ...query, range: e.currentTarget.value as RangeKey })}
      >
        {RANGES.map((r) => (
          <option key={r} value={r}>
            {RANGE_LABELS[r]}
          </option>
        ))}
      </select>
      <select aria-label="Sort" value={query.sort} onChange={(e) => onChange({ ...query, sort: e.currentTarget.value })}>
        {SORTS.map((s) => (
          <option key={s.key} value={s.key}>
            {s.label}
          </option>
        ))}
      </select>
    </div>
  );
}
