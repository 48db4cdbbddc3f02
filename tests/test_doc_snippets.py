"""The Python snippets of README.md and docs/*.md run against a real server, as written.

A file's ```python blocks run as one script, in order, so a block may use what an earlier one
made (`run_id`, say). The script keeps each block on its Markdown line numbers, so a traceback
names the line of the file to fix. The server stands in for the documented default address: it
is named in RUNWIRE_API_URL, and `127.0.0.1:50051` in a block is replaced by its address.

A block that cannot run here (one that needs a TLS server elsewhere, say) follows a line
`<!-- snippet: skip (why) -->`.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from runwire_server.server import RunningServer

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_ADDRESS = "127.0.0.1:50051"

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
        skipped = {
            b.first_line - 1 for b in python_blocks(path) if b.skip_reason is not None
        }  # the fence's line
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
