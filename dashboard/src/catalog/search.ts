import { useEffect, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { useDebounced } from "./hooks";

/** The page's search text, kept in `?q=` so a search can be shared and survives a reload. */
export function useQuerySearch(): { text: string; setText: (t: string) => void; query: string } {
  const { path, query, route } = useLocation();
  const [text, setText] = useState(query.q ?? "");
  const settled = useDebounced(text.trim());
  useEffect(() => {
    if ((query.q ?? "") === settled) return;
    route(settled ? `${path}?q=${encodeURIComponent(settled)}` : path, true);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [settled]);
  return { text, setText, query: settled };
}
