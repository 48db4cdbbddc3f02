"""The curl commands of docs/http.md, and then the README's, run with bash against a real server
as written, and their outputs checked.

A ```sh block runs when the line before it is `<!-- run: NAME -->`; NAME picks the check of
its output below, so a new command needs a check here to run. A block that cannot run here
(one that needs a TLS server elsewhere) follows `<!-- run: skip (why) -->`. Every ```sh block
of docs/http.md carries one or the other.

The blocks of docs/http.md run in order in one bash process, as a reader runs them one after
the other in a terminal: a block uses the shell variables the ones before it set ($API, $RUN).
The server, a `runwire server start` process with CORS open to the origin the document shows,
stands in for the documented default address: `127.0.0.1:50080` in a block is replaced by its
HTTP address. The watch runs in the background, as in a second terminal, while the next block
finishes the run. The token examples run against a server that requires tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GUARDED_TOKEN, ServerProcess, start_server_process
from tests.test_doc_snippets import blocks_of

ROOT = Path(__file__).resolve().parents[1]
HTTP_DOC = ROOT / "docs" / "http.md"
README = ROOT / "README.md"
DEFAULT_HTTP_ADDRESS = "127.0.0.1:50080"
ORIGIN = "https://dashboard.example.com"
# The commands that run against the server that requires tokens.
GUARDED = ("auth", "server-info")

RUN = re.compile(r"^\s*<!--\s*run:\s*(?P<name>[\w-]+)(?:\s*\((?P<reason>[^)]+)\))?\s*-->\s*$")


@dataclass(frozen=True)
class Command:
    name: str
    where: str
    code: str


def commands_of(path: Path) -> list[Command]:
    """The file's ```sh blocks that a run marker names, in order (skipped ones left out)."""
    lines = path.read_text().splitlines()
    found = []
    for block in blocks_of(path):
        fence = block.first_line - 2  # 0-based index of the opening fence
        before = next((line for line in reversed(lines[:fence]) if line.strip()), "")
        marker = RUN.match(before)
        if block.language != "sh" or marker is None or marker["name"] == "skip":
            continue
        found.append(Command(marker["name"], block.where, "\n".join(block.lines)))
    return found


def http_address(server: ServerProcess) -> str:
    listening = next(e for e in server.lines if e.get("event") == "server.listening")
    url = listening["http"]
    assert url and url.startswith("http://"), listening
    return str(url.removeprefix("http://"))


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def body_after_headers(text: str) -> str:
    return text.replace("\r\n", "\n").split("\n\n", 1)[1]


# The checks, by block name: each gets the block's standard output and what earlier blocks
# printed (by name).
def check_create_flow(out: str, seen: dict[str, str]) -> None:
    answer = json.loads(out)
    assert answer["flow"]["name"] == "etl" and uuid.UUID(answer["flow"]["id"])
    assert answer["created"] is True


def check_create_run(out: str, seen: dict[str, str]) -> None:
    assert uuid.UUID(out.strip()), out


def check_get(out: str, seen: dict[str, str]) -> None:
    run = json.loads(out)
    assert run["state"] == "STATE_TYPE_PENDING" and run["tags"] == ["nightly"], run
    assert isinstance(run["name"], str) and run["name"]


def check_list(out: str, seen: dict[str, str]) -> None:
    runs = json_lines(out)
    assert [r["id"] for r in runs] == [seen["create-run"].strip()], runs
    assert runs[0]["state"] == "STATE_TYPE_PENDING"


def check_set_state(out: str, seen: dict[str, str]) -> None:
    assert json.loads(out) == {
        "status": "SET_STATE_STATUS_ACCEPT",
        "state": "STATE_TYPE_RUNNING",
        "stateWritten": True,
    }


def check_watch(out: str, seen: dict[str, str]) -> None:
    messages = json_lines(out)
    run_id = seen["create-run"].strip()
    kinds = [next(iter(set(m) - {"cursor"}), "end of stream") for m in messages]
    assert kinds == ["flowRunState", "caughtUp", "flowRunState", "end", "end of stream"], out
    first, _, live, end, last = messages
    assert first["flowRunState"]["flowRunId"] == run_id
    assert first["flowRunState"]["state"]["type"] == "STATE_TYPE_RUNNING"
    assert live["flowRunState"]["state"]["type"] == "STATE_TYPE_COMPLETED"
    assert int(live["cursor"]) > int(first["cursor"])
    assert end["end"] == {"reason": "REASON_RUN_FINISHED"}
    assert last == {}


def check_finish(out: str, seen: dict[str, str]) -> None:
    assert out.strip() == "STATE_TYPE_COMPLETED"


def check_error(out: str, seen: dict[str, str]) -> None:
    assert out.startswith("HTTP/1.1 404"), out
    error = json.loads(body_after_headers(out))
    assert error["code"] == "not_found"
    assert [d["type"] for d in error["details"]] == [
        "google.rpc.ErrorInfo",
        "google.rpc.ResourceInfo",
    ]


def check_error_details(out: str, seen: dict[str, str]) -> None:
    assert out.startswith('google.rpc.ErrorInfo\n1: "INVALID_FIELD"\n2: "runwire.dev"\n'), out
    assert 'google.rpc.BadRequest\n1 {\n  1: "flow_run_id"\n' in out, out


def check_auth(out: str, seen: dict[str, str]) -> None:
    assert out.splitlines() == ["guarded-etl"], out  # the flow the test made on that server


def check_server_info(out: str, seen: dict[str, str]) -> None:
    info = json.loads(out)
    assert info["authenticationRequired"] is True, info
    assert info["caller"] == {"name": "interop", "role": "CALLER_ROLE_WRITE"}, info
    assert info["serverVersion"] == version("runwire-server"), info


def check_deadline(out: str, seen: dict[str, str]) -> None:
    assert int(json.loads(out)["count"]) >= 1


def check_healthz(out: str, seen: dict[str, str]) -> None:
    assert json.loads(out) == {"status": "serving"}


def check_cors(out: str, seen: dict[str, str]) -> None:
    status, *headers = out.replace("\r\n", "\n").strip().splitlines()
    assert status.startswith("HTTP/1.1 200"), out
    fields = dict(line.lower().split(": ", 1) for line in headers)
    assert fields["access-control-allow-origin"] == ORIGIN
    assert "connect-protocol-version" in fields["access-control-allow-headers"]


def check_readme(out: str, seen: dict[str, str]) -> None:
    # The flow may exist already: the guide made one of that name on the same server.
    assert json.loads(out)["flow"]["name"] == "etl", out


CHECKS: dict[str, Callable[[str, dict[str, str]], None]] = {
    "create-flow": check_create_flow,
    "create-run": check_create_run,
    "get": check_get,
    "list": check_list,
    "set-state": check_set_state,
    "watch": check_watch,
    "finish": check_finish,
    "error": check_error,
    "error-details": check_error_details,
    "auth": check_auth,
    "server-info": check_server_info,
    "deadline": check_deadline,
    "healthz": check_healthz,
    "cors": check_cors,
    "readme": check_readme,  # README.md's example, run after the guide's
}


def test_every_sh_block_of_the_http_guide_is_marked_and_every_run_has_a_check() -> None:
    lines = HTTP_DOC.read_text().splitlines()
    for block in blocks_of(HTTP_DOC):
        if block.language != "sh":
            continue
        before = next(line for line in reversed(lines[: block.first_line - 2]) if line.strip())
        marker = RUN.match(before)
        assert marker, f"{block.where}: a sh block without <!-- run: NAME --> or run: skip"
        if marker["name"] == "skip":
            assert marker["reason"], f"{block.where}: a skip marker names its reason"
    names = [c.name for c in commands_of(HTTP_DOC) + commands_of(README)]
    assert len(names) == len(set(names)), names
    assert names == list(CHECKS), "the documents' commands and this file's checks differ"


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """bash, curl and jq; protoc as grpcio-tools ships it when none is installed."""
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the HTTP guide's commands need {' and '.join(missing)}, not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    if shutil.which("protoc") is None:
        shims = tmp_path_factory.mktemp("bin")
        (shims / "protoc").write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m grpc_tools.protoc "$@"\n'
        )
        (shims / "protoc").chmod(0o755)
        env["PATH"] = f"{env.get('PATH', '')}{os.pathsep}{shims}"
    return env


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`runwire server start` with CORS open to the origin the guide's preflight comes from."""
    tmp = tmp_path_factory.mktemp("http-docs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNWIRE_CORS_ALLOWED_ORIGINS", ORIGIN)
        server = start_server_process(f"sqlite:///{tmp / 'http.db'}")
    server.drain_output()
    yield server
    assert server.stop() == 0


def post(address: str, method: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://{address}/runwire.v1.{method}", json.dumps(body).encode(), headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def run_script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """bash with the script on stdin, in its own process group: a watch left running when the
    script fails or outlasts its time is ended with it."""
    process = subprocess.Popen(
        ["bash", "-s"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(script, timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the guide's commands did not finish in 120 s:\n{err}\n{out}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_the_curl_commands_run_as_written(
    tools: dict[str, str],
    cors_server: ServerProcess,
    guarded_server: ServerProcess,
    tmp_path: Path,
) -> None:
    address, guarded = http_address(cors_server), http_address(guarded_server)
    # The token example lists the flows of the server that requires tokens: it holds one.
    post(guarded, "FlowService/CreateFlow", {"flow": {"name": "guarded-etl"}}, GUARDED_TOKEN)
    commands = commands_of(HTTP_DOC) + commands_of(README)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    script = ["set -eo pipefail"]
    for command in commands:
        code = command.code.replace(
            DEFAULT_HTTP_ADDRESS, guarded if command.name in GUARDED else address
        )
        out, err = outputs / f"{command.name}.out", outputs / f"{command.name}.err"
        script.append(f"echo {command.name} > {outputs / 'current'}")
        if command.name == "watch":
            # As in a second terminal: the next block finishes the run once the watch is live.
            script += [
                f"{{\n{code}\n}} > {out} 2> {err} &",
                "WATCH=$!",
                f"for _ in $(seq 200); do grep -q caughtUp {out} && break; sleep 0.05; done",
            ]
        else:
            script.append(f"{{\n{code}\n}} > {out} 2> {err}")
        if command.name == "finish":
            script.append('wait "$WATCH"')
    script.append(f"echo done > {outputs / 'current'}")
    env = {**tools, "RUNWIRE_TOKEN": GUARDED_TOKEN}
    result = run_script("\n".join(script) + "\n", env, tmp_path)
    current = (outputs / "current").read_text().strip()
    if result.returncode != 0 or current != "done":
        where = next((c.where for c in commands if c.name == current), current)
        failed = outputs / f"{current}"
        pytest.fail(
            f"the command at {where} ({current}) failed with {result.returncode}:\n"
            f"{_read(failed.with_suffix('.err'))}\n{_read(failed.with_suffix('.out'))}\n"
            f"{result.stderr}"
        )
    seen: dict[str, str] = {}
    for command in commands:
        out = (outputs / f"{command.name}.out").read_text()
        try:
            CHECKS[command.name](out, seen)
        except (AssertionError, ValueError, KeyError) as exc:
            raise AssertionError(
                f"{command.where} ({command.name}) printed what the guide does not say:\n{out}"
            ) from exc
        seen[command.name] = out
    # The token was needed: without it, the same call is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(guarded, "FlowService/ListFlows", {})
    assert refused.value.code == 401


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
