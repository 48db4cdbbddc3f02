// Pieces the catalog pages share: the slot meter, tags, times, the search box, "Load more".
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { formatRelative, formatTime, millisOf } from "../lib/format";
import { meterLook } from "./logic";
import "./catalog.css";

/** Slots in use against a limit: the figures always, a bar beside them for a glance. */
export function Meter({ used, limit }: { used: number | undefined; limit: number | undefined }) {
  const look = meterLook(used, limit);
  if (look.level === "none") {
    return (
      <span class="muted" title={look.label}>
        —
      </span>
    );
  }
  return (
    <span class={`meter meter-${look.level}`} title={look.label} data-slots={look.text}>
      <span class="meter-bar" aria-hidden="true">
        <span class="meter-fill" style={{ width: `${Math.round(look.fill * 100)}%` }} />
      </span>
      <span class="meter-text num">{look.text}</span>
      {(look.level === "full" || look.level === "over") && (
        <span class="meter-word" aria-hidden="true">
          {look.level}
        </span>
      )}
      <span class="sr-only">{look.label}</span>
    </span>
  );
}

export function Tags({ tags }: { tags: readonly string[] }) {
  if (!tags.length) return <span class="muted">—</span>;
  return (
    <span class="tags" title={tags.join(", ")}>
      {tags.map((t) => (
        <span key={t} class="tag">
          {t}
        </span>
      ))}
    </span>
  );
}

/** A time as "3 minutes ago", with the exact time on hover and for machines. */
export function When({ ts, now }: { ts: Timestamp | undefined; now: number }) {
  const ms = millisOf(ts);
  if (ms === undefined) return <span class="muted">—</span>;
  return (
    <time dateTime={new Date(ms).toISOString()} title={formatTime(ms)}>
      {formatRelative(ms, now)}
    </time>
  );
}

export function SearchBox({
  value,
  onInput,
  label,
  placeholder,
}: {
  value: string;
  onInput: (value: string) => void;
  label: string;
  placeholder: string;
}) {
  return (
    <div class="toolbar" role="search">
      <label class="search">
        <span class="sr-only">{label}</span>
        <input
          type="search"
          data-search
          placeholder={placeholder}
          value={value}
          aria-keyshortcuts="/"
          onInput={(e) => onInput((e.target as HTMLInputElement).value)}
        />
        <kbd class="key" aria-hidden="true">
          /
        </kbd>
      </label>
    </div>
  );
}

export function LoadMore({ shown, hasMore, loading, onClick, noun }: {
  shown: number;
  hasMore: boolean;
  loading: boolean;
  onClick: () => void;
  noun: string;
}) {
  return (
    <div class="pager">
      <span class="muted">
        {shown} {noun}
        {hasMore ? " shown" : ""}
      </span>
      {hasMore && (
        <button type="button" onClick={onClick} disabled={loading}>
          {loading ? "Loading…" : "Load more"}
        </button>
      )}
    </div>
  );
}
