import { useState } from "preact/hooks";
import { session } from "../session";

/** Shown when the server wants a token: the token is kept for this browser tab only. */
export function SignIn() {
  const [token, setToken] = useState("");
  return (
    <main id="main" class="signin">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) session.signIn(token);
        }}
      >
        <h1>Sign in to Runwire</h1>
        <p>This server asks for a token. It is kept in this browser tab only.</p>
        <label for="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          autoFocus
          placeholder="rwt_…"
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={!token.trim()}>
          Sign in
        </button>
        <p class="hint">
          Make one with <code>runwire token create --role read --name NAME</code> on the server.
        </p>
      </form>
    </main>
  );
}
