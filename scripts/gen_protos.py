"""Regenerate the committed runwire.v1 stubs from protos/ (the one codegen entry point).

Run with `uv run python scripts/gen_protos.py`. CI runs it and fails if the output differs
from what is committed.
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


def main() -> int:
    for old in PACKAGE.glob("*_pb2*.py*"):
        old.unlink()
    sources = sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / "runwire" / "v1").glob("*.proto")
    )
    # protoc finds the mypy plugins on PATH, so put this interpreter's scripts first.
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if shutil.which("protoc-gen-mypy", path=env["PATH"]) is None:
        print("protoc-gen-mypy is missing: run through `uv run`", file=sys.stderr)
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
        *sources,
    ]
    subprocess.run(cmd, check=True, cwd=PROTOS, env=env)
    # Service-less files get an empty _pb2_grpc module; drop it as Temporal's generator does.
    for grpc_file in PACKAGE.glob("*_pb2_grpc.py"):
        if "Stub" not in grpc_file.read_text():
            grpc_file.unlink()
            grpc_file.with_suffix(".pyi").unlink(missing_ok=True)
    print(f"generated {len(sources)} protos into {PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
