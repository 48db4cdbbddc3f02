"""The dashboard in a real Chromium against a server holding 100,000 runs.

    uv run python -m bench.dashboard                 # about two minutes
    uv run python -m bench.dashboard --runs 20000 --json out.json

Figures (each goal in BENCHMARKS.md):
- first load: the JavaScript and CSS the runs page loads, gzipped as the edge serves them, from
  the browser's resource timing (and, as a check, from the files index.html names);
- first rows: from navigation to the runs page's first rows in the DOM (the page's own
  `runwire:runs-rendered` mark), with a cold cache and then warm;
- live update: from a client's SetFlowRunState being acknowledged to the open run page showing
  the new state (the page's clock and this process's are the same machine's clock);
- scrolling: 10,000 runs scrolled through in their list, page by page as they load and then
  again once loaded, with every animation frame's length and the browser's long animation
  frames (over 50 ms) from its performance timeline.

Needs Chromium and chromedriver (`apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.workloads import seed_runs
from runwire.v1 import flow_run_service_pb2, flow_run_service_pb2_grpc, state_pb2
from tests.browser import chromium_paths, new_chromium
from tests.conftest import start_server_process

SCROLL_ROWS = 10_000
LIVE_CHANGES = 10
# Scroll speed in the list, in pixels per frame: a fast flick (about 30 rows a frame).
SCROLL_STEP = 1000

# Resolves with every frame's length and the long animation frames seen while the list
# scrolls to its end, fetching further pages as it goes, until `rows` rows have been passed.
SCROLL_SCRIPT = """
const [rows, step, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const box = document.querySelector('[data-testid="runs-scroller"]');
const long = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) long.push(e.duration);
});
observer.observe({ type: "long-animation-frame" });
const frames = [];
let last = performance.now();
const started = last;
const rowHeight = () => {
  const row = box.querySelector('[data-testid="run-row"]');
  return row ? row.getBoundingClientRect().height : 30;
};
function tick(now) {
  frames.push(now - last);
  last = now;
  box.scrollTop += step;
  const passed = (box.scrollTop + box.clientHeight) / rowHeight();
  if (passed >= rows || now - started > 120000) {
    observer.disconnect();
    done({ frames, long, passed: Math.floor(passed), seconds: (now - started) / 1000 });
    return;
  }
  requestAnimationFrame(tick);
}
requestAnimationFrame(tick);
"""

# Resolves with the wall-clock time (ms since the epoch) at which the run page's state badge
# first shows `tone`, watching every frame.
STATE_SCRIPT = """
const [tone, done] = [arguments[0], arguments[arguments.length - 1]];
const started = performance.now();
function look() {
  const badge = document.querySelector('[data-testid="run-state"]');
  if (badge && badge.dataset.state === tone) {
    done(performance.timeOrigin + performance.now());
  } else if (performance.now() - started > 10000) {
    done(null);
  } else {
    requestAnimationFrame(look);
  }
}
look();
"""


def first_load_bytes(driver: Any) -> dict[str, Any]:
    entries = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => "
        "({name: e.name, size: e.encodedBodySize, type: e.initiatorType}))"
    )
    code = [e for e in entries if e["name"].endswith((".js", ".css"))]
    return {"files": len(code), "gzipped_bytes": sum(e["size"] for e in code)}


def index_bytes(url: str) -> int:
    """The gzipped size of the scripts and styles index.html names (no lazy page)."""
    import re

    with httpx.Client(base_url=url, headers={"accept-encoding": "gzip"}) as http:
        index = http.get("/").text
        total = 0
        for asset in re.findall(r'(?:src|href)="(/assets/[^"]+\.(?:js|css))"', index):
            response = http.get(asset)
            total += int(response.headers["content-length"])
    return total


def first_rows_ms(driver: Any, url: str) -> float:
    driver.get(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mark = driver.execute_script(
            "const m = performance.getEntriesByName('runwire:runs-rendered');"
            "return m.length ? m[0].startTime : null"
        )
        if mark is not None:
            return float(mark)
        time.sleep(0.02)
    raise RuntimeError("the runs page never rendered its first rows")


def live_update_ms(driver: Any, url: str, grpc_port: int, run_id: str) -> list[float]:
    driver.get(f"{url}/runs/{run_id}")
    driver.set_script_timeout(30)
    delays = []
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        tones = {
            state_pb2.STATE_TYPE_RUNNING: "running",
            state_pb2.STATE_TYPE_PENDING: "pending",
        }
        # The page is open and showing the run before the first change.
        driver.execute_async_script(STATE_SCRIPT, "running")
        for n in range(LIVE_CHANGES):
            state = state_pb2.STATE_TYPE_PENDING if n % 2 == 0 else state_pb2.STATE_TYPE_RUNNING
            runs.SetFlowRunState(
                flow_run_service_pb2.SetFlowRunStateRequest(
                    flow_run_id=run_id, state=state_pb2.State(type=state), force=True
                )
            )
            acknowledged = time.time() * 1000
            shown = driver.execute_async_script(STATE_SCRIPT, tones[state])
            if shown is None:
                raise RuntimeError(f"the run page never showed {tones[state]}")
            delays.append(max(0.0, shown - acknowledged))
    return delays


def scroll(driver: Any, url: str) -> dict[str, Any]:
    driver.get(f"{url}/runs?range=all")
    deadline = time.monotonic() + 30
    while not driver.execute_script(
        "return document.querySelector('[data-testid=\"run-row\"]') !== null"
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the runs page never showed a row")
        time.sleep(0.05)
    driver.set_script_timeout(180)
    loading = driver.execute_async_script(SCROLL_SCRIPT, SCROLL_ROWS, SCROLL_STEP)
    driver.execute_script("document.querySelector('[data-testid=\"runs-scroller\"]').scrollTop = 0")
    time.sleep(0.5)
    loaded = driver.execute_async_script(SCROLL_SCRIPT, SCROLL_ROWS, SCROLL_STEP)
    return {"loading": _frames(loading), "loaded": _frames(loaded)}


def _frames(result: dict[str, Any]) -> dict[str, Any]:
    frames = sorted(result["frames"][1:])  # the first is the wait for the first frame
    return {
        "rows": result["passed"],
        "seconds": round(result["seconds"], 1),
        "frames": len(frames),
        "frame_p50_ms": round(statistics.median(frames), 1),
        "frame_p99_ms": round(frames[int(len(frames) * 0.99) - 1], 1),
        "frame_max_ms": round(frames[-1], 1),
        "long_frames": len(result["long"]),
        "long_frame_max_ms": round(max(result["long"], default=0.0), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the database")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    paths = chromium_paths()
    if paths is None:
        print("needs Chromium and chromedriver: apt-get install chromium chromium-driver")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{tmp}/dashboard.db"
        started = time.perf_counter()
        seed_runs(database_url, args.runs)
        print(f"seeded {args.runs:,} runs in {time.perf_counter() - started:.0f}s", flush=True)
        server = start_server_process(database_url, "--http-address", "127.0.0.1:0")
        server.drain_output()
        url = server.http_url
        assert url is not None
        driver = new_chromium(paths)
        try:
            figures: dict[str, Any] = {"runs_stored": args.runs}
            cold = first_rows_ms(driver, f"{url}/runs")
            figures["first_load"] = first_load_bytes(driver)
            figures["first_load"]["index_gzipped_bytes"] = index_bytes(url)
            warm = [first_rows_ms(driver, f"{url}/runs") for _ in range(5)]
            figures["first_rows_ms"] = {
                "cold": round(cold, 1),
                "warm_median": round(statistics.median(warm), 1),
                "warm_max": round(max(warm), 1),
            }
            run_id = running_run(server.port)
            delays = sorted(live_update_ms(driver, url, server.port, run_id))
            figures["live_update_ms"] = {
                "changes": len(delays),
                "median": round(statistics.median(delays), 1),
                "max": round(delays[-1], 1),
            }
            figures["scroll"] = scroll(driver, url)
        finally:
            driver.quit()
            server.stop()
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def running_run(grpc_port: int) -> str:
    """The id of a seeded run in the Running state."""
    from runwire.v1 import filters_pb2 as f

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        listed = runs.ListFlowRuns(
            flow_run_service_pb2.ListFlowRunsRequest(
                filter=f.FlowRunCriteria(
                    flow_runs=f.FlowRunFilter(
                        state=f.StateFilter(
                            type=f.StateTypeFilter(
                                any_of=f.StateTypeList(values=[state_pb2.STATE_TYPE_RUNNING])
                            )
                        )
                    )
                ),
                page_size=1,
            )
        )
    return str(listed.flow_runs[0].id)


def report(figures: dict[str, Any]) -> None:
    load = figures["first_load"]
    rows = figures["first_rows_ms"]
    live = figures["live_update_ms"]
    print(f"\nrunwire dashboard, {figures['runs_stored']:,} runs stored")
    print(
        f"  first load: {load['gzipped_bytes'] / 1024:.1f} KiB gzipped JS+CSS in "
        f"{load['files']} files (index.html names {load['index_gzipped_bytes'] / 1024:.1f} KiB)"
        "   goal <= 250 KB"
    )
    print(
        f"  first rows after navigation: cold {rows['cold']:.0f} ms, warm median "
        f"{rows['warm_median']:.0f} ms (max {rows['warm_max']:.0f})   goal <= 1000 ms"
    )
    print(
        f"  live update on an open run page: median {live['median']:.0f} ms, max "
        f"{live['max']:.0f} ms over {live['changes']} changes   goal <= 1000 ms"
    )
    for phase, s in figures["scroll"].items():
        print(
            f"  scrolling {s['rows']:,} runs ({phase}): {s['frames']} frames in {s['seconds']} s, "
            f"p50 {s['frame_p50_ms']} ms, p99 {s['frame_p99_ms']} ms, max {s['frame_max_ms']} ms; "
            f"long frames (> 50 ms) {s['long_frames']} (max {s['long_frame_max_ms']} ms)"
            "   goal: none"
        )


if __name__ == "__main__":
    sys.exit(main())
