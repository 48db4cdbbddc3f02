// What to tell a person when a call fails: the API's own message, with what to do about it.
import { Code, ConnectError } from "@connectrpc/connect";

export interface Problem {
  title: string;
  detail: string;
  /** Whether trying again later may help (the server is away, or busy). */
  transient: boolean;
  code: Code;
}

export function describe(err: unknown): Problem {
  const e = ConnectError.from(err);
  const detail = e.rawMessage || e.message;
  switch (e.code) {
    case Code.Unauthenticated:
      return { code: e.code, transient: false, title: "Sign-in needed", detail };
    case Code.PermissionDenied:
      return { code: e.code, transient: false, title: "Not allowed", detail };
    case Code.NotFound:
      return { code: e.code, transient: false, title: "Not found", detail };
    case Code.InvalidArgument:
      return { code: e.code, transient: false, title: "Invalid request", detail };
    case Code.FailedPrecondition:
      return { code: e.code, transient: false, title: "Not possible now", detail };
    case Code.Unavailable:
      return {
        code: e.code,
        transient: true,
        title: "Server unreachable",
        detail: detail || "the Runwire server did not answer",
      };
    case Code.ResourceExhausted:
      return { code: e.code, transient: true, title: "Server busy", detail };
    case Code.DeadlineExceeded:
      return { code: e.code, transient: true, title: "Timed out", detail };
    case Code.Canceled:
      return { code: e.code, transient: true, title: "Cancelled", detail };
    default:
      return { code: e.code, transient: false, title: `Error (${Code[e.code]})`, detail };
  }
}
