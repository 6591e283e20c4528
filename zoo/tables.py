"""Tables the ``zoo`` command prints: plain cells, drawn for a terminal, whole in a pipe, or as CSV or JSON.

A :class:`Table` holds column names and rows of text cells; a cell may carry a rich style (:class:`Styled`: an
error in red, a ratio in green). :func:`print_table` writes it in one of :data:`FORMATS`:

* ``table``: drawn with rich. On a terminal it fits the width, folding long cells onto more lines but never
  cutting one, and the first column (the names) keeps its full width; written anywhere else (``zoo list |
  cat``, ``> log``) it takes its natural width, whatever ``$COLUMNS`` says, so every value is whole;
* ``csv``, ``json`` (a list of one object per row) and ``markdown`` (a GitHub table, what the README's tables
  are made with): the cells' text, styles dropped.

:func:`console` is the rich console the commands print their other lines with, on the same terms.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from typing import IO, Any

FORMATS = ("table", "csv", "json", "markdown")
PIPE_WIDTH = 100_000  # a console that is not a terminal never wraps: lines and tables keep their natural width


@dataclass(frozen=True)
class Styled:
    """A cell's text with the rich style it is drawn in on a terminal."""

    text: str
    style: str


Cell = str | Styled


@dataclass
class Table:
    """Column names and rows of cells."""

    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)

    def add_row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(self.columns)} columns")
        self.rows.append(list(cells))

    def records(self) -> list[dict[str, str]]:
        """The rows as {column: text}."""
        return [{column: text(cell) for column, cell in zip(self.columns, row)} for row in self.rows]


def text(cell: Cell) -> str:
    return cell.text if isinstance(cell, Styled) else cell


def console(file: IO[str] | None = None) -> Any:
    """A rich console on ``file`` (stdout): the terminal's width on a terminal, unlimited elsewhere."""
    from rich.console import Console

    terminal = Console(file=file)
    return terminal if terminal.is_terminal else Console(file=file, width=PIPE_WIDTH)


def print_table(table: Table, fmt: str = "table", file: IO[str] | None = None) -> None:
    """Write ``table`` to ``file`` (stdout) in format ``fmt`` (one of :data:`FORMATS`)."""
    out = file or sys.stdout
    if fmt == "json":
        out.write(json.dumps(table.records(), indent=2) + "\n")
    elif fmt == "csv":
        csv.writer(out, lineterminator="\n").writerows([table.columns, *([text(c) for c in row] for row in table.rows)])
    elif fmt == "markdown":
        lines = [table.columns, ["---"] * len(table.columns), *([text(c) for c in row] for row in table.rows)]
        out.write("".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |\n" for line in lines))
    elif fmt == "table":
        console(out).print(_rich(table), crop=False)  # wider than a narrow terminal: wrapped there, not cut
    else:
        raise ValueError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _rich(table: Table) -> Any:
    from rich.table import Table as RichTable
    from rich.text import Text

    drawn = RichTable(*table.columns)
    for index, column in enumerate(drawn.columns):
        column.overflow = "fold"  # a cell too long for a narrow terminal goes on over lines, never cut
        if index == 0:
            column.min_width = max([len(table.columns[0]), *(len(text(row[0])) for row in table.rows)])
    for row in table.rows:
        drawn.add_row(*(Text(cell.text, style=cell.style) if isinstance(cell, Styled) else Text(cell) for cell in row))
    return drawn
