"""Everything the CLI prints for people and CI logs: the consoles, and tables that never cut a name.

Rich fits a table to the console's width, and outside a terminal that width is 80 columns: it wraps
and truncates cells (``eigenf…``, ``dlib-resnet1`` / ``28``), so a script grepping a log for a name
misses it. Commands therefore build a :class:`TextTable` and print it with :func:`print_table`:

* in a terminal, a rich table when it fits whole at the terminal's width, else one
  ``header: value`` line per cell (the terminal may soft-wrap a long value, but never cuts it);
* anywhere else (a file, a pipe, a CI log), a plain table: one line per row, columns padded with
  spaces, whatever the width.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rich.console import Console
from rich.table import Table
from rich.text import Text


class LogSafeConsole(Console):
    """A rich Console whose ``print`` never breaks a line outside a terminal (a CI log keeps each
    message, path and name on one line); in a terminal it wraps as usual."""

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:  # type: ignore[override]
        if soft_wrap is None and not is_terminal(self):
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


def is_terminal(console: Console) -> bool:
    """True where rich's drawing (live bars, boxed tables) shows as intended: an interactive terminal.

    The one test of "terminal or CI log" for tables and progress alike.
    """
    return console.is_terminal and not console.is_dumb_terminal


#: Progress bars, notes and tables of long-running commands go to stderr, so ``--json`` output on
#: stdout stays machine-readable.
console = LogSafeConsole(stderr=True)
#: Listing commands (``extractors``, ``models``, ``vectors inspect``): the table is the result.
stdout_console = LogSafeConsole()


class Align(str, Enum):
    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True)
class Column:
    header: str
    align: Align = Align.LEFT


@dataclass(frozen=True)
class TextTable:
    """A table of plain strings, rendered for a terminal, a log, or Markdown from the same rows."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    #: False for field/value listings (``vectors inspect``): no header line.
    show_header: bool = True

    @classmethod
    def build(cls, title: str, columns, rows, *, show_header: bool = True) -> TextTable:
        """Columns as headers or :class:`Column`; cells become one-line strings."""
        cols = tuple(c if isinstance(c, Column) else Column(str(c)) for c in columns)
        cells = tuple(tuple(_one_line(cell) for cell in row) for row in rows)
        for row in cells:
            if len(row) != len(cols):
                raise ValueError(f"table {title!r}: row {row} has {len(row)} cells for {len(cols)} columns")
        return cls(_one_line(title), cols, cells, show_header)

    def plain_lines(self) -> list[str]:
        """Title, header, then one line per row; columns padded to their widest cell."""
        lines = [self.title] if self.title else []
        shown = ([tuple(c.header for c in self.columns)] if self.show_header else []) + list(self.rows)
        widths = [max((len(row[i]) for row in shown), default=0) for i in range(len(self.columns))]
        for row in shown:
            cells = [
                cell.rjust(width) if column.align is Align.RIGHT else cell.ljust(width)
                for cell, width, column in zip(row, widths, self.columns)
            ]
            lines.append("  ".join(cells).rstrip())
        return lines

    def field_lines(self) -> list[str]:
        """``header: value`` lines, a blank line between rows (for a terminal too narrow for the table)."""
        lines = [self.title] if self.title else []
        for index, row in enumerate(self.rows):
            if self.show_header:
                if index:
                    lines.append("")
                lines.extend(f"{c.header}: {cell}" for c, cell in zip(self.columns, row))
            else:
                lines.append(f"{row[0]}: {'  '.join(row[1:])}" if row[0] else f"  {'  '.join(row[1:])}")
        return lines

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table (for a CI job summary page)."""
        headers = [c.header for c in self.columns] if self.show_header else [""] * len(self.columns)
        rule = ["---:" if c.align is Align.RIGHT else "---" for c in self.columns]
        lines = [_md_row(headers), _md_row(rule)] + [_md_row(row) for row in self.rows]
        return "\n".join(lines) + "\n"

    def rich(self) -> Table:
        """A rich table whose cells never wrap; :func:`print_table` shows it only where it fits whole."""
        table = Table(title=self.title or None, show_header=self.show_header)
        for column in self.columns:
            # Text, not markup: a name such as "[x]" must print as written.
            table.add_column(Text(column.header), justify=column.align.value, no_wrap=True, overflow="fold")
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))
        return table


UNLIMITED_WIDTH = 1_000_000


def print_table(table: TextTable, target: Console | None = None) -> None:
    """Print ``table`` so that no cell is ever wrapped or truncated (see the module docstring)."""
    target = target or console
    if not is_terminal(target):
        _write_lines(target, table.plain_lines())
        return
    rendered = table.rich()
    # Measured without the console's limit: rich clamps a measurement to the width it is given.
    natural = target.measure(rendered, options=target.options.update_width(UNLIMITED_WIDTH)).maximum
    if natural <= target.width:
        target.print(rendered)
    else:
        _write_lines(target, table.field_lines())


def _write_lines(target: Console, lines: list[str]) -> None:
    # Straight to the console's file: rich would re-wrap at its width and read "[...]" as markup.
    stream = target.file
    # A blank line after the table keeps two tables apart in a log.
    stream.write("".join(line + "\n" for line in lines) + "\n")
    stream.flush()


def _one_line(value) -> str:
    return " ".join(str(value).split("\n")).replace("\r", " ")


def _md_row(cells) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
