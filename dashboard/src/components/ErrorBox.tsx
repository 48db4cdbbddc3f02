import { Code } from "@connectrpc/connect";
import { describe } from "../lib/errors";

/** A failed call, said as the person would want it: what happened, the server's words, and
 * what can be done (try again, sign in). */
export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const problem = describe(error);
  return (
    <div class="error" role="alert">
      <strong>{problem.title}</strong>
      {problem.detail && <span class="error-detail">{problem.detail}</span>}
      {problem.code === Code.PermissionDenied && (
        <span class="error-detail">This token may only read; sign in with a write token to act.</span>
      )}
      {onRetry && problem.code !== Code.Unauthenticated && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}
