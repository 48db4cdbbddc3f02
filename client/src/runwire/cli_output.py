"""How `runwire` commands print what they read: a table that fits the terminal, or JSON, JSON
lines or bare ids for scripts (`-o table|wide|json|jsonl|id`). The server's commands
(runwire_server.commands) print through it too, so all commands look alike.

Tables never cut an id: on a narrow terminal they leave out their least needed columns first.
Piped, a table keeps every column at its full width, without colour, for grep and awk.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

# Two spaces between columns, as kubectl and gh print them.
GAP = 2
# The fewest characters a column that may be shortened keeps ("nightly-…").
CUT_WIDTH = 8


class Output(StrEnum):
    """What a read command prints."""

    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    JSONL = "jsonl"
    ID = "id"


OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table: what fits the terminal; wide: every column; json: one document; "
        "jsonl: one object per line; id: one id per line, for xargs",
    ),
]


# Help as plain text, laid out by Click: examples keep their lines, and options show their
# variables and defaults as written.
HELP_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def command_group(help: str | None) -> typer.Typer:
    """A group of `runwire` commands, such as `flow-run`, with the command line's help
    (`help` None: its callback's docstring)."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings=HELP_SETTINGS,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


def stdout() -> Console:
    """The console of standard output, made for each command (it reads COLUMNS and whether
    standard output is a terminal when it is made). It reads no markup: names and messages
    are the users' text, and `[/]` in one must print as itself."""
    return Console(highlight=False, soft_wrap=True, markup=False)


def stderr() -> Console:
    """The console of standard error, for what went wrong."""
    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def plain(value: object) -> str:
    """`value` as one line of text that cannot steer the terminal: control and format
    characters (escape sequences, newlines, right-to-left overrides) are shown escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def complain(what: str, message: object) -> None:
    """One line on standard error: what went wrong, in red, and the details."""
    line = Text(what, style="red")
    line.append(f": {plain(message)}")
    stderr().print(line)


@dataclass(frozen=True)
class Column:
    """A table column: `cell` makes its text from a row; columns with a lower `keep` are
    left out first when the table does not fit; `wide` ones only show with `-o wide`;
    `cut` ones may be shortened with an ellipsis rather than left out."""

    header: str
    cell: Callable[[Any], str | Text]
    keep: int = 0
    wide: bool = False
    cut: bool = False


def table_of(columns: Sequence[Column], rows: Sequence[Any], *, width: int | None) -> Table:
    """A borderless table of `rows`; `width` None: every column at full width. Otherwise the
    columns that fit `width`, least needed left out first."""
    cells = [[_text(column.cell(row)) for column in columns] for row in rows]
    natural = [
        max([len(column.header), *(cells[r][c].cell_len for r in range(len(rows)))])
        for c, column in enumerate(columns)
    ]
    shown = list(range(len(columns)))
    budget = list(natural)
    if width is not None:
        # Columns that may be shortened count at their shortest while the table is made to
        # fit; what room is left then goes back to them, the most needed first.
        shortest = [
            min(natural[c], CUT_WIDTH) if column.cut else natural[c]
            for c, column in enumerate(columns)
        ]

        def need() -> int:
            return sum(shortest[c] for c in shown) + GAP * (len(shown) - 1)

        for dropped in sorted(shown, key=lambda c: (columns[c].keep, -c)):
            if need() <= width or len(shown) == 1:
                break
            shown.remove(dropped)
        room = width - need()
        budget = list(shortest)
        for c in sorted((c for c in shown if columns[c].cut), key=lambda c: -columns[c].keep):
            grown = min(natural[c], shortest[c] + max(room, 0))
            room -= grown - shortest[c]
            budget[c] = grown
    table = Table(
        box=None,
        pad_edge=False,
        padding=(0, GAP, 0, 0),
        header_style="bold",
        show_edge=False,
        expand=False,
    )
    for c in shown:
        column = columns[c]
        table.add_column(
            column.header.upper(),
            no_wrap=True,
            overflow="ellipsis" if column.cut else "fold",
            min_width=budget[c],
            max_width=budget[c],
        )
    for row_cells in cells:
        table.add_row(*(row_cells[c] for c in shown))
    return table


def _text(value: str | Text) -> Text:
    return value if isinstance(value, Text) else Text(plain(value))


def emit(
    output: Output,
    rows: Sequence[Any],
    columns: Sequence[Column],
    *,
    as_json: Callable[[Any], Any],
    row_id: Callable[[Any], str],
    none: str,
) -> None:
    """Print `rows` as `output` asks; `as_json` makes a row's JSON value, `row_id` its id,
    and `none` is what a table says when there are no rows."""
    if output is Output.JSON:
        write_json([as_json(row) for row in rows])
    elif output is Output.JSONL:
        for row in rows:
            sys.stdout.write(json_line(as_json(row)))
    elif output is Output.ID:
        for row in rows:
            sys.stdout.write(row_id(row) + "\n")
    elif not rows:
        stderr().print(none)
    else:
        shown = [c for c in columns if output is Output.WIDE or not c.wide]
        width = fitting_width(output)
        print_table(table_of(shown, rows, width=width), fit=width is not None)


def emit_one(output: Output, document: Callable[[], Any], object_id: str) -> bool:
    """Print one object as `output` asks, when it asks for JSON, JSON lines or the id
    (`document` makes its JSON value); False: the caller shows it as text."""
    if output is Output.JSON:
        write_json(document())
    elif output is Output.JSONL:
        sys.stdout.write(json_line(document()))
    elif output is Output.ID:
        sys.stdout.write(object_id + "\n")
    else:
        return False
    return True


def fitting_width(output: Output) -> int | None:
    """The width a table must fit: the terminal's, or none when piped or asked to be wide."""
    console = stdout()
    return console.width if console.is_terminal and output is not Output.WIDE else None


def print_table(renderable: RenderableType, *, fit: bool = True) -> None:
    """Print a table: on a terminal, within its width unless `fit` is False; piped, as wide
    as the table is (a console never renders wider than it was made)."""
    console = stdout()
    if not fit or not console.is_terminal:
        console = Console(
            highlight=False,
            width=10_000,
            force_terminal=console.is_terminal,
            color_system="auto" if console.color_system else None,
        )
    console.print(renderable, crop=False)


def json_line(value: Any) -> str:
    """`value` as one line of JSON, for `-o jsonl`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"


def write_json(value: Any) -> None:
    """One JSON document on standard output."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
