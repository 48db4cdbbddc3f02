import type { StateType } from "../gen/runwire/v1/state_pb";
import { STATE_ORDER, stateLook, stateSlug } from "../lib/format";

/** Runs per state, as toggles: each chip counts its state and turns its filter on or off. */
export function StateCounts({
  counts,
  selected,
  onToggle,
}: {
  counts: ReadonlyMap<StateType, number> | undefined;
  selected: readonly StateType[];
  onToggle: (state: StateType) => void;
}) {
  return (
    <div class="state-chips" role="group" aria-label="Filter by state" data-testid="state-counts">
      {STATE_ORDER.map((state) => {
        const look = stateLook(state);
        const count = counts?.get(state);
        const on = selected.includes(state);
        return (
          <button
            key={state}
            type="button"
            class={`chip chip-${look.tone}${on ? " on" : ""}${count === 0 && !on ? " zero" : ""}`}
            aria-pressed={on}
            data-state={stateSlug(state)}
            onClick={() => onToggle(state)}
          >
            <span aria-hidden="true">{look.mark}</span>
            {look.label}
            <span class="chip-count num" data-testid="state-count">
              {count === undefined ? "·" : count.toLocaleString()}
            </span>
          </button>
        );
      })}
    </div>
  );
}
