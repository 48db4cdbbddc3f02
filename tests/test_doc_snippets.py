"""The Python snippets of README.md and docs/*.md, and the Node.js programs of
docs/calling-from-other-languages.md, run against a real server as written.

A file's ```python blocks run as one script, in order, so a block may use what an earlier one
made (`run_id`, say). The script keeps each block on its Markdown line numbers, so a traceback
names the line of the file to fix. The server stands in for the documented default address: it
is named in RUNWIRE_API_URL, and `127.0.0.1:50051` in a block is replaced by its address.

A block that cannot run here (one that needs a TLS server elsewhere, say) follows a line
`<!-- snippet: skip (why) -->`.

The guide's JavaScript blocks each start with a comment naming their file (`// demo.js ...`);
they run with `node` in a project made by `npm init -y`, with the packages tests/interop locks
(skipped without node and npm).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from runwire_server.server import RunningServer
from tests.conftest import GUARDED_TOKEN, ServerProcess
from tests.helpers import INTEROP, node_packages

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_ADDRESS = "127.0.0.1:50051"
GUIDE = ROOT / "docs" / "calling-from-other-languages.md"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
SKIP = re.compile(r"^\s*<!--\s*snippet:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
MARKER = re.compile(r"<!--\s*snippet:")


@dataclass(frozen=True)
class Block:
    path: Path
    first_line: int  # 1-based, the first line of code (after the fence)
    lines: tuple[str, ...]  # without the fence's indentation
    language: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.first_line}"


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the skip marker on the line before it."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and closing.match(lines[end]) is None:
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.name}:{index + 1}: a code block that never closes")
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        skip = SKIP.match(before)
        body = tuple(line.removeprefix(indent) for line in lines[index + 1 : end])
        found.append(
            Block(
                path=path,
                first_line=index + 2,
                lines=body,
                language=opening["info"].lower(),
                skip_reason=skip["reason"].strip() if skip else None,
            )
        )
        index = end + 1
    return found


def python_blocks(path: Path) -> list[Block]:
    return [block for block in blocks_of(path) if block.language in ("python", "py")]


def script_of(path: Path, address: str) -> str:
    """The file's runnable Python blocks as one script, each on its own Markdown lines."""
    lines = [""] * len(path.read_text().splitlines())
    for block in python_blocks(path):
        if block.skip_reason is None:
            for offset, line in enumerate(block.lines):
                lines[block.first_line - 1 + offset] = line.replace(DEFAULT_ADDRESS, address)
    return "\n".join(lines) + "\n"


WITH_SNIPPETS = [
    path for path in DOCUMENTS if any(b.skip_reason is None for b in python_blocks(path))
]


def test_the_readme_has_snippets_to_run() -> None:
    # Guards the extraction itself: a parser that found nothing would pass every file.
    readme = [b for b in python_blocks(ROOT / "README.md") if b.skip_reason is None]
    assert len(readme) >= 3, [b.where for b in readme]
    assert ROOT / "README.md" in WITH_SNIPPETS


def test_every_skip_marker_names_its_reason_and_stands_before_a_python_block() -> None:
    for path in DOCUMENTS:
        text = path.read_text().splitlines()
        markers = [number for number, line in enumerate(text, 1) if MARKER.search(line)]
        # The line number of each skipped block's opening fence.
        skipped = {b.first_line - 1 for b in python_blocks(path) if b.skip_reason is not None}
        for number in markers:
            assert SKIP.match(text[number - 1]), f"{path.name}:{number}: a malformed marker"
            fence = next(n for n in range(number + 1, len(text) + 1) if text[n - 1].strip())
            assert fence in skipped, f"{path.name}:{number}: not right before a python block"


@pytest.mark.parametrize("path", WITH_SNIPPETS, ids=lambda path: path.name)
async def test_the_python_snippets_run(path: Path, server: RunningServer, tmp_path: Path) -> None:
    address = f"127.0.0.1:{server.port}"
    script = tmp_path / f"{path.name}.py"
    script.write_text(script_of(path, address))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env["RUNWIRE_API_URL"] = address
    # A subprocess, as a reader would run it; the server keeps serving on this event loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    blocks = ", ".join(b.where for b in python_blocks(path) if b.skip_reason is None)
    assert process.returncode == 0, (
        f"the snippets of {path.name} ({blocks}) failed:\n{err.decode()}\n{out.decode()}"
    )


def node_programs() -> dict[str, str]:
    """The guide's JavaScript blocks, by the file name their first line gives."""
    programs: dict[str, str] = {}
    for block in blocks_of(GUIDE):
        if block.language in ("js", "javascript", "mjs", "cjs"):
            named = re.match(r"//\s*(?P<name>[\w.-]+\.[cm]?js)\b", block.lines[0])
            assert named, f"{block.where}: the block's first line names no file (// name.js)"
            assert named["name"] not in programs, f"{block.where}: {named['name']} twice"
            programs[named["name"]] = "\n".join(block.lines) + "\n"
    return programs


def test_the_node_guide_installs_the_versions_tests_interop_locks() -> None:
    install = [
        line
        for block in blocks_of(GUIDE)
        if block.language == "sh"
        for line in block.lines
        if line.startswith("npm install")
    ]
    assert len(install) == 1, install
    named = dict(word.rsplit("@", 1) for word in install[0].split() if "@" in word[1:])
    # tests/interop also locks the packages of its Connect client, which the guide's gRPC
    # programs do not use: the guide installs some of the locked packages, at their versions...
    locked = json.loads((INTEROP / "package.json").read_text())["dependencies"]
    assert named == {name: locked.get(name) for name in named}
    lock = json.loads((INTEROP / "package-lock.json").read_text())
    assert {name: lock["packages"][f"node_modules/{name}"]["version"] for name in locked} == locked
    # ...and every package its programs load.
    loaded = {
        package
        for code in node_programs().values()
        for found in re.findall(r"""(?:require\(|from )"([^"]+)"\)?""", code)
        if not found.startswith("node:")
        for package in ["/".join(found.split("/")[: 2 if found.startswith("@") else 1])]
    }
    assert loaded == set(named), loaded


def test_the_node_guide_runs_as_written(guarded_server: ServerProcess, tmp_path: Path) -> None:
    node, modules = node_packages()
    programs = node_programs()
    assert sorted(programs) == ["runwire-demo.js", "runwire-demo.mjs"]
    # The project a reader starts from; the packages are the locked ones tests/interop holds.
    npm = shutil.which("npm")
    assert npm is not None  # node_packages skips without it
    subprocess.run([npm, "init", "-y"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    made = json.loads((tmp_path / "package.json").read_text())
    assert made.get("type", "commonjs") == "commonjs"
    (tmp_path / "node_modules").symlink_to(modules, target_is_directory=True)
    (tmp_path / "protos").symlink_to(ROOT / "protos", target_is_directory=True)
    # What the guide says they print: the first text block after the first program.
    blocks = blocks_of(GUIDE)
    first = next(b.first_line for b in blocks if b.language in ("js", "javascript", "mjs", "cjs"))
    printed = next(b for b in blocks if b.language == "text" and b.first_line > first)
    expected = [re.sub(r"^created \S+", "created <name>", line) for line in printed.lines]
    for name, code in programs.items():
        (tmp_path / name).write_text(code)
        result = subprocess.run(
            [node, name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": str(Path(node).parent),
                "RUNWIRE_API_URL": f"127.0.0.1:{guarded_server.port}",
                "RUNWIRE_API_TOKEN": GUARDED_TOKEN,
            },
        )
        assert result.returncode == 0, f"{name}:\n{result.stderr}\n{result.stdout}"
        lines = [
            re.sub(r"^created \S+", "created <name>", line) for line in result.stdout.splitlines()
        ]
        assert lines == expected, f"{name} printed other lines than the guide shows"
