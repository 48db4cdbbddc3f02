"""The contract's evolution rules, enforced by `buf breaking` (which CI runs against the
last released contract): renumbering or retyping a field fails; adding a field passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = Path(sys.executable).with_name("buf")
FLOW = "protos/runwire/v1/flow.proto"


def breaking(tmp_path: Path, old: str, new: str) -> subprocess.CompletedProcess[str]:
    """`buf breaking` of a copy of the contract with one edit, against the contract as it is."""
    if not BUF.exists():
        pytest.skip("buf is not installed (dev dependency buf-bin)")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    path = tmp_path / FLOW
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return subprocess.run(
        [str(BUF), "breaking", str(tmp_path), "--against", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_renumbered_field_is_a_breaking_change(tmp_path: Path) -> None:
    result = breaking(tmp_path, "string name = 2;", "string name = 12;")
    assert result.returncode == 100, result.stdout + result.stderr
    assert 'Previously present field "2" with name "name" on message "Flow" was deleted' in (
        result.stdout
    )


def test_a_retyped_field_is_a_breaking_change(tmp_path: Path) -> None:
    result = breaking(tmp_path, "string name = 2;", "bytes name = 2;")
    assert result.returncode == 100, result.stdout + result.stderr
    assert 'changed type from "string" to "bytes"' in result.stdout


def test_adding_a_field_is_not(tmp_path: Path) -> None:
    result = breaking(
        tmp_path,
        "string name = 2;",
        "string name = 2;\n  // A field added later.\n  optional string added_later = 99;",
    )
    assert result.returncode == 0, result.stdout + result.stderr
