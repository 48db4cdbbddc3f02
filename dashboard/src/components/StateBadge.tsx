import type { StateType } from "../gen/runwire/v1/state_pb";
import { stateLook } from "../lib/format";

/** A state as a coloured pill with a mark and its name (the name may differ from the type's). */
export function StateBadge({ type, name }: { type: StateType | undefined; name?: string }) {
  const look = stateLook(type);
  return (
    <span class={`badge state-${look.tone}`} data-state={look.tone}>
      <span aria-hidden="true">{look.mark}</span> {name || look.label}
    </span>
  );
}
