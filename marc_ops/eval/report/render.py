"""The report's sections as Markdown (plots linked relatively) and as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

import polars as pl

from marc_ops.eval.report.document import Figure, Section, Table
from marc_ops.tables import markdown_table

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.paper td { font-style: italic; color: #666; background: #fafafa; }
blockquote { border-left: 4px solid #d9822b; margin: 1em 0; padding: 0.4em 1em; background: #fff6ec; }
code { background: #f1f1f1; padding: 0 0.25em; border-radius: 3px; font-size: 0.95em; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
"""


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown; a figure is an image link to ``<name>.png`` beside the file."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_markdown_table(block))
            elif isinstance(block, Figure):
                parts.append(f"![{block.caption}]({block.name}.png)")
            else:
                parts.append(block)
    return "\n\n".join(parts) + "\n"


def _markdown_table(table: Table) -> str:
    def italic(cell: str) -> str:
        return f"_{cell}_" if cell else cell

    rows = [[italic(c) for c in row.cells] if row.paper else list(row.cells) for row in table.rows]
    frame = pl.DataFrame(rows, schema={c: pl.String() for c in table.columns}, orient="row")
    return markdown_table(frame, max_rows=max(frame.height, 1))


def _inline_html(text: str) -> str:
    """The little Markdown the report's prose uses: `code` and **bold**."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def render_html(title: str, sections: list[Section], pngs: Mapping[str, bytes]) -> str:
    """The report as one HTML page, its figures embedded from ``pngs`` (by name) as base64."""
    body = [f"<h1>{_inline_html(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{_inline_html(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                body.append(_html_table(block))
            elif isinstance(block, Figure):
                data = base64.b64encode(pngs[block.name]).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                    f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
                )
            elif block.startswith("> "):
                body.append(f"<blockquote>{_inline_html(block[2:])}</blockquote>")
            else:
                body.append(f"<p>{_inline_html(block)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title.replace('`', ''))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_inline_html(c)}</th>" for c in table.columns)
    rows = []
    for row in table.rows:
        cells = "".join(f"<td>{_inline_html(c)}</td>" for c in row.cells)
        rows.append(f'<tr class="paper">{cells}</tr>' if row.paper else f"<tr>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
