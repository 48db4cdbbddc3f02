import { ErrorBoundary, LocationProvider, Route, Router, lazy, useLocation } from "preact-iso";
import { useEffect } from "preact/hooks";
import { useStore } from "./lib/store";
import { session } from "./session";
import { SignIn } from "./pages/SignIn";
import { Runs } from "./pages/Runs";
import { NotFound } from "./pages/NotFound";
import { useIdentity } from "./identity";

// Pages past the first are loaded when first visited: the first load carries the runs page only.
const Run = lazy(() => import("./pages/Run").then((m) => m.Run));
const Flows = lazy(() => import("./pages/Flows").then((m) => m.Flows));
const Flow = lazy(() => import("./pages/Flow").then((m) => m.Flow));
const Deployments = lazy(() => import("./pages/Deployments").then((m) => m.Deployments));
const Limits = lazy(() => import("./pages/Limits").then((m) => m.Limits));

const NAV: { href: string; label: string; key: string }[] = [
  { href: "/runs", label: "Runs", key: "r" },
  { href: "/flows", label: "Flows", key: "f" },
  { href: "/deployments", label: "Deployments", key: "d" },
  { href: "/concurrency-limits", label: "Concurrency limits", key: "l" },
];

function Shell() {
  const { path, route } = useLocation();
  const state = useStore(session);
  useIdentity();
  useShortcuts(route);
  if (state.signInNeeded) return <SignIn />;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/runs">
          Runwire
        </a>
        <nav aria-label="Main">
          {NAV.map((item) => (
            <a
              key={item.href}
              href={item.href}
              aria-current={path === item.href || path.startsWith(`${item.href}/`) ? "page" : undefined}
              title={`${item.label} (g then ${item.key})`}
            >
              {item.label}
            </a>
          ))}
        </nav>
        <div class="who" data-testid="who">
          {state.role !== "unknown" && (
            <span class={`role role-${state.role}`} title={state.name ? `token ${state.name}` : "no tokens on this server"}>
              {state.role === "read" ? "read-only" : state.name ? state.name : "local"}
            </span>
          )}
          {session.token() && (
            <button type="button" class="link" onClick={() => session.signOut()}>
              Sign out
            </button>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <ErrorBoundary>
          <Router>
            <Route path="/" component={Runs} />
            <Route path="/runs" component={Runs} />
            <Route path="/runs/:id" component={Run} />
            <Route path="/flows" component={Flows} />
            <Route path="/flows/:id" component={Flow} />
            <Route path="/deployments" component={Deployments} />
            <Route path="/concurrency-limits" component={Limits} />
            <Route default component={NotFound} />
          </Router>
        </ErrorBoundary>
      </main>
    </>
  );
}

/** `g` then a page's key goes to it; `/` jumps to the page's search box. */
function useShortcuts(route: (url: string) => void) {
  useEffect(() => {
    let pendingG = false;
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
      if (e.key === "/") {
        const search = document.querySelector<HTMLInputElement>("[data-search]");
        if (search) {
          e.preventDefault();
          search.focus();
        }
        return;
      }
      if (pendingG) {
        pendingG = false;
        const item = NAV.find((n) => n.key === e.key);
        if (item) route(item.href);
        return;
      }
      if (e.key === "g") pendingG = true;
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, [route]);
}

export function App() {
  return (
    <LocationProvider>
      <Shell />
    </LocationProvider>
  );
}
