// Who the dashboard calls the server as. The token lives in sessionStorage: this browser tab
// only, gone when the tab closes, never in a cookie or the URL.
import { Store } from "./lib/store";

const KEY = "runwire.token";

export type Role = "unknown" | "read" | "write";

export interface SessionState {
  /** The server refused the call for want of a (valid) token. */
  signInNeeded: boolean;
  /** What the server says this caller may do; "unknown" until it has answered. */
  role: Role;
  /** The token's name, as the server knows it ("" without tokens). */
  name: string;
}

function storage(): Storage | undefined {
  try {
    return typeof sessionStorage === "undefined" ? undefined : sessionStorage;
  } catch {
    return undefined; // storage disabled by the browser's settings
  }
}

class Session extends Store<SessionState> {
  constructor() {
    super({ signInNeeded: false, role: "unknown", name: "" });
  }

  token(): string {
    return storage()?.getItem(KEY) ?? "";
  }

  signIn(token: string): void {
    storage()?.setItem(KEY, token.trim());
    this.set({ signInNeeded: false, role: "unknown", name: "" });
  }

  signOut(): void {
    storage()?.removeItem(KEY);
    this.set({ signInNeeded: true, role: "unknown", name: "" });
  }

  needSignIn(): void {
    if (!this.get().signInNeeded) this.set({ ...this.get(), signInNeeded: true });
  }

  identify(role: Role, name: string): void {
    this.set({ ...this.get(), role, name });
  }
}

export const session = new Session();
