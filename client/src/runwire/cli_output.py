"""How `runwire` commands print rows: a table that fits the terminal, or JSON for scripts. The
server's commands (runwire_server.commands) print through it too, so all commands look alike."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def emit(as_json: bool, rows: list[dict[str, Any]], table: Callable[[], Table]) -> None:
    """Print `rows` as JSON, or else the table `table` makes of them."""
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
    else:
        console.print(table())
