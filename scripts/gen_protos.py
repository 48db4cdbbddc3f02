"""Regenerate the committed code from protos/ (the one codegen entry point): the runwire.v1
Python messages, their gRPC stubs and their Connect services and clients (`*_connect.py`, which
need the `connect` extra of the runwire distribution); and the dashboard's TypeScript messages
and service descriptors (`dashboard/src/gen`, by protoc-gen-es from `dashboard/node_modules`).

Run with `uv run python scripts/gen_protos.py` (after `npm ci` in dashboard/ for the
TypeScript). CI runs it and fails if the output differs from what is committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "client" / "src"
PACKAGE = OUT / "runwire" / "v1"
DASHBOARD = ROOT / "dashboard"
TS_OUT = DASHBOARD / "src" / "gen"
PROTOC_GEN_ES = DASHBOARD / "node_modules" / ".bin" / "protoc-gen-es"


def main() -> int:
    for pattern in ("*_pb2*.py*", "*_connect.py"):
        for old in PACKAGE.glob(pattern):
            old.unlink()
    sources = sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / "runwire" / "v1").glob("*.proto")
    )
    # protoc finds the mypy plugins on PATH, so put this interpreter's scripts first.
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for plugin in ("protoc-gen-mypy", "protoc-gen-connectrpc"):
        if shutil.which(plugin, path=env["PATH"]) is None:
            print(f"{plugin} is missing: run through `uv run`", file=sys.stderr)
            return 1
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        # Connect (and gRPC-Web) services and clients over HTTP, for Google's _pb2 messages.
        f"--connectrpc_out={OUT}",
        "--connectrpc_opt=protobuf=google",
        *sources,
    ]
    subprocess.run(cmd, check=True, cwd=PROTOS, env=env)
    # Service-less files get an empty _pb2_grpc module; drop it as Temporal's generator does.
    for grpc_file in PACKAGE.glob("*_pb2_grpc.py"):
        if "Stub" not in grpc_file.read_text():
            grpc_file.unlink()
            grpc_file.with_suffix(".pyi").unlink(missing_ok=True)
    for connect_file in PACKAGE.glob("*_connect.py"):
        if "ASGIApplication" not in connect_file.read_text():
            connect_file.unlink()
    print(f"generated {len(sources)} protos into {PACKAGE.relative_to(ROOT)}")
    return typescript(sources, env)


def typescript(sources: list[str], env: dict[str, str]) -> int:
    if not PROTOC_GEN_ES.exists():
        print(
            "dashboard/node_modules is missing, so the TypeScript was not generated: "
            "run `npm ci` in dashboard/ first",
            file=sys.stderr,
        )
        return 0 if os.environ.get("RUNWIRE_REQUIRE_TYPESCRIPT") != "1" else 1
    shutil.rmtree(TS_OUT, ignore_errors=True)
    TS_OUT.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"--plugin=protoc-gen-es={PROTOC_GEN_ES}",
        f"--es_out={TS_OUT}",
        # TypeScript sources the bundler compiles; the well-known types come from
        # @bufbuild/protobuf itself.
        "--es_opt=target=ts",
        *sources,
    ]
    subprocess.run(cmd, check=True, cwd=PROTOS, env=env)
    print(f"generated {len(sources)} protos into {TS_OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
