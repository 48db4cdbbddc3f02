// One timer for the whole page: every live duration and relative time reads this clock, and
// the timer runs only while something on screen follows it.
import { useEffect, useState } from "preact/hooks";

const listeners = new Set<(now: number) => void>();
let timer: ReturnType<typeof setInterval> | undefined;

function subscribe(listener: (now: number) => void): () => void {
  listeners.add(listener);
  timer ??= setInterval(() => {
    const now = Date.now();
    for (const l of [...listeners]) l(now);
  }, 1000);
  return () => {
    listeners.delete(listener);
    if (!listeners.size && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/** The time now, re-rendering each second while `live`. */
export function useNow(live = true): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => (live ? subscribe(setNow) : undefined), [live]);
  return live ? now : Date.now();
}
