import { useRef, useState } from "preact/hooks";
import { api } from "../api";
import { session } from "../session";
import { type SignInStatus, signInMessage, signInOutcome, signInStart } from "../catalog/logic";
import "../catalog/catalog.css";

/**
 * Shown when the server wants a token. The token is tried before it is kept, so a wrong one
 * leaves the form up with the server's reason; a right one is kept in this tab's
 * sessionStorage (never localStorage, a cookie or the URL) and the page asked for appears.
 */
export function SignIn() {
  const [token, setToken] = useState("");
  // A token still kept here means the server turned it down since it was accepted.
  const [status, setStatus] = useState<SignInStatus>(() => signInStart(session.token()));
  const input = useRef<HTMLInputElement>(null);
  const message = signInMessage(status);
  const checking = status.kind === "checking";

  const submit = async (e: Event) => {
    e.preventDefault();
    const candidate = token.trim();
    if (!candidate || checking) return;
    setStatus({ kind: "checking" });
    // The kept token (if any) would ride on the trial call in place of the candidate.
    if (session.token()) session.signOut();
    try {
      await api.flows.listFlows({ pageSize: 1 }, { headers: { authorization: `Bearer ${candidate}` } });
    } catch (err) {
      setStatus(signInOutcome(err));
      input.current?.select();
      return;
    }
    session.signIn(candidate);
  };

  return (
    <main id="main" class="signin">
      <form onSubmit={submit} aria-describedby="signin-why" noValidate>
        <span class="brand-line">Runwire</span>
        <h1>Sign in</h1>
        <p id="signin-why" class="muted">
          This server asks for a token. It is kept in this browser tab only, until the tab closes or you sign out.
        </p>
        {message && (
          <div class="notice" role="alert" id="signin-error" data-testid="signin-error">
            <strong>{message.text}</strong>
            {message.detail && <span class="detail">The server said: {message.detail}</span>}
          </div>
        )}
        <label for="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          ref={input}
          autoComplete="off"
          spellcheck={false}
          autoFocus
          required
          placeholder="rwt_…"
          value={token}
          aria-invalid={status.kind === "rejected" ? true : undefined}
          aria-describedby={message ? "signin-error" : undefined}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={!token.trim() || checking}>
          {checking ? "Checking…" : "Sign in"}
        </button>
        <p class="hint">
          Make one with <code>runwire token create --role read --name NAME</code> on the server.
        </p>
      </form>
    </main>
  );
}
