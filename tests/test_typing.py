"""A user's project sees the installed runwire package typed (its py.typed marker)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "typed_usage.py"


def test_a_users_strict_mypy_sees_real_types(tmp_path: Path) -> None:
    # Outside the repository, without its mypy settings: runwire is found as an installed
    # package, which mypy reads only when it is marked as typed.
    script = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, script)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", script.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
