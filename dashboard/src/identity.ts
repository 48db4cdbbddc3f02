// Asks the server who this caller is (GetServerInfo), so that pages show only the actions the
// token may take. With tokens on and none given, the call is refused and the shell signs in.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { CallerRole } from "./gen/runwire/v1/server_service_pb";
import { useStore } from "./lib/store";
import { type Role, session } from "./session";

export function roleOf(role: CallerRole): Role {
  switch (role) {
    case CallerRole.WRITE:
      return "write";
    case CallerRole.READ:
      return "read";
    default:
      // A role this dashboard does not know yet: show no actions rather than offer refused ones.
      return "read";
  }
}

export function useIdentity(): void {
  const state = useStore(session);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    if (state.role !== "unknown" || state.signInNeeded) return;
    const abort = new AbortController();
    api.server.getServerInfo({}, { signal: abort.signal }).then(
      (info) => {
        if (abort.signal.aborted) return;
        session.identify(roleOf(info.caller?.role ?? CallerRole.UNSPECIFIED), info.caller?.name ?? "");
      },
      // Refused for want of a token: the interceptor has asked for sign-in. Any other failure
      // (the server away) leaves the role unknown, so no actions, and asks again shortly; the
      // page's own calls say what went wrong.
      () => {
        if (!abort.signal.aborted) retry = setTimeout(() => setAttempt((n) => n + 1), 5000);
      },
    );
    let retry: ReturnType<typeof setTimeout> | undefined;
    return () => {
      abort.abort();
      clearTimeout(retry);
    };
  }, [state.role, state.signInNeeded, attempt]);
}
