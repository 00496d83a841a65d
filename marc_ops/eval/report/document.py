"""The report's content, independent of the output format: sections of prose, tables and figures.

A prose block is Markdown with only `code`, **bold** and a leading ``> `` for a call-out; a row
marked ``paper`` holds the paper's printed figures and is set in italics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    paper: bool = False


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Figure:
    """A plot, by its name in the report's PNGs (``accuracy_vs_tokens``, ``efficiency``)."""

    name: str
    caption: str


Block = str | Table | Figure


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]
