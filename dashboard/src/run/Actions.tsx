import { useLocation } from "preact-iso";
import { useRef, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import type { FlowRun } from "../gen/runwire/v1/flow_run_pb";
import { type OrchestrationResult, SetStateStatus } from "../gen/runwire/v1/orchestration_pb";
import { StateType } from "../gen/runwire/v1/state_pb";
import { useStore } from "../lib/store";
import { isTerminal, stateLook } from "../lib/format";
import { session } from "../session";

export type ActionName = "cancel" | "resume" | "retry" | "delete";

/** Which actions make sense for a run in this state, in the order they are offered. */
export function availableActions(type: StateType | undefined): ActionName[] {
  const out: ActionName[] = [];
  if (type === StateType.PAUSED) out.push("resume");
  if (type !== undefined && !isTerminal(type) && type !== StateType.CANCELLING) out.push("cancel");
  if (type === StateType.FAILED || type === StateType.CRASHED || type === StateType.CANCELLED) out.push("retry");
  out.push("delete");
  return out;
}

/** A refused or deferred proposal, said as the server said it: "REJECT: reason". */
export function describeOutcome(result: OrchestrationResult | undefined): string | undefined {
  if (!result || result.status === SetStateStatus.ACCEPT) return undefined;
  const status = SetStateStatus[result.status] ?? "UNSPECIFIED";
  const reason = result.details?.reason || "no reason given";
  const now = result.stateWritten && result.state ? ` (the run is now ${result.state.name || stateLook(result.state.type).label})` : "";
  return `${status}: ${reason}${now}`;
}

const COPY: Record<ActionName, { label: string; title: string; body: string; confirm: string; danger?: boolean }> = {
  cancel: {
    label: "Cancel",
    title: "Cancel this run?",
    body: "A run with infrastructure goes to Cancelling until its worker stops it; one without goes straight to Cancelled.",
    confirm: "Cancel run",
    danger: true,
  },
  resume: { label: "Resume", title: "Resume this run?", body: "The paused run continues where it stopped.", confirm: "Resume run" },
  retry: {
    label: "Retry",
    title: "Retry this run?",
    body: "The run is scheduled again now (AwaitingRetry), for a worker to pick up.",
    confirm: "Retry run",
  },
  delete: {
    label: "Delete",
    title: "Delete this run?",
    body: "The run, its states, task runs and logs are deleted for good.",
    confirm: "Delete run",
    danger: true,
  },
};

export function Actions({ run, onChanged }: { run: FlowRun; onChanged: () => void }) {
  const { role } = useStore(session);
  const { route } = useLocation();
  const dialog = useRef<HTMLDialogElement>(null);
  const [pending, setPending] = useState<ActionName | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [outcome, setOutcome] = useState<string | undefined>(undefined);
  if (role !== "write") return null;

  const open = (action: ActionName) => {
    setPending(action);
    setError(undefined);
    setOutcome(undefined);
    dialog.current?.showModal();
  };
  const close = () => dialog.current?.close();

  const perform = async (action: ActionName): Promise<OrchestrationResult | undefined> => {
    const flowRunId = run.id;
    switch (action) {
      case "cancel": {
        const type = run.infrastructurePid ? StateType.CANCELLING : StateType.CANCELLED;
        const r = await api.flowRuns.setFlowRunState({ flowRunId, state: { type, message: "Cancelled from the dashboard" } });
        return r.result;
      }
      case "resume":
        return (await api.flowRuns.resumeFlowRun({ flowRunId })).result;
      case "retry": {
        const r = await api.flowRuns.setFlowRunState({
          flowRunId,
          state: { type: StateType.SCHEDULED, name: "AwaitingRetry", message: "Retried from the dashboard" },
          force: true,
        });
        return r.result;
      }
      case "delete":
        await api.flowRuns.deleteFlowRun({ flowRunId });
        route("/runs");
        return undefined;
    }
  };

  const confirm = async () => {
    if (!pending) return;
    setBusy(true);
    setError(undefined);
    try {
      const result = await perform(pending);
      const said = describeOutcome(result);
      setOutcome(said);
      if (!said) close();
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const copy = pending ? COPY[pending] : undefined;
  return (
    <div class="run-actions">
      {availableActions(run.state?.type).map((a) => (
        <button key={a} type="button" data-action={a} class={COPY[a].danger ? "danger" : undefined} onClick={() => open(a)}>
          {COPY[a].label}
        </button>
      ))}
      {outcome && !dialog.current?.open && (
        <p class="run-outcome" role="status">
          {outcome}
        </p>
      )}
      <dialog ref={dialog} class="run-dialog" aria-labelledby="run-dialog-title" onClose={() => setPending(undefined)}>
        {copy && (
          <form
            method="dialog"
            onSubmit={(e) => {
              e.preventDefault();
              void confirm();
            }}
          >
            <h2 id="run-dialog-title">{copy.title}</h2>
            <p>
              <strong>{run.name}</strong> <span class="muted mono">{run.id}</span>
            </p>
            <p class="muted">{copy.body}</p>
            {outcome && (
              <p class="run-outcome" role="status" data-testid="outcome">
                {outcome}
              </p>
            )}
            {error !== undefined && <ErrorBox error={error} onRetry={() => void confirm()} />}
            <div class="run-dialog-buttons">
              <button type="button" onClick={close} autofocus>
                {outcome ? "Close" : "Keep run"}
              </button>
              {!outcome && (
                <button type="submit" class={copy.danger ? "danger-solid" : "primary"} data-testid="confirm" disabled={busy}>
                  {busy ? "Working…" : copy.confirm}
                </button>
              )}
            </div>
          </form>
        )}
      </dialog>
    </div>
  );
}
