"""Small self-contained HTML pages for the report: escaped text, tables, one stylesheet, no script."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1.5em; color: #1e293b; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #cbd5e1; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f1f5f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { background: #fee2e2; font-weight: bold; } p.note { color: #475569; max-width: 60em; }
pre { background: #f8fafc; border: 1px solid #e2e8f0; padding: 0.6em; font-size: 12px; overflow-x: auto; }
code { font-size: 12px; }
"""


def esc(value: object) -> str:
    """``value`` as HTML text ("–" for None)."""
    return "–" if value is None else html.escape(str(value))


def table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = (),
          bad: Sequence[tuple[int, int]] = ()) -> str:
    """An HTML table; the ``numeric`` columns right-aligned, the (row, column) cells in ``bad`` marked."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            classes = " ".join(c for c, on in (("num", j in numeric), ("bad", (i, j) in bad)) if on)
            cells.append(f'<td class="{classes}">{esc(value)}</td>' if classes else f"<td>{esc(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"


def page(title: str, body: str) -> str:
    """A whole HTML document."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{esc(title)}</h1>\n{body}</body></html>\n")


def write_page(path: str | Path, title: str, body: str) -> None:
    """Write :func:`page` to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(page(title, body), encoding="utf-8")
