"""Name the commit whose contract is the last released one (protos/RELEASED): `buf breaking`
in .ci/run checks that runwire.v1 stays compatible with it.

    uv run python scripts/contract_baseline.py            # HEAD
    uv run python scripts/contract_baseline.py 41cb8f0    # a given commit

Run it when a release is made, on the released commit. The commit must hold the contract
(buf.yaml and protos/); the file keeps its explanation and gets the full commit id.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "protos" / "RELEASED"


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(__doc__)
    commit = git("rev-parse", "--verify", f"{argv[0] if argv else 'HEAD'}^{{commit}}")
    git("cat-file", "-e", f"{commit}:buf.yaml")
    lines = [line for line in BASELINE.read_text().splitlines() if line.startswith("#")]
    BASELINE.write_text("\n".join([*lines, f"commit {commit}"]) + "\n")
    print(f"protos/RELEASED: commit {commit}")


if __name__ == "__main__":
    main(sys.argv[1:])
