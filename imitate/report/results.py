"""The results tables on one report page: each task's Markdown table (the paper's layout) as an HTML table.

Snakemake's report shows images and HTML but offers CSV and Markdown only as downloads; this page renders the
``.md`` files the tables stage writes: a bold title line, then a pipe table whose first column is the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imitate.report.html import esc, table


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_table_html(text: str, source: str = "table") -> str:
    """One of our Markdown tables as HTML: its title as a paragraph, its pipe table as a table."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows = [_cells(line) for line in lines if line.startswith("|") and not set(line) <= set("|-: ")]
    if len(rows) < 2:
        raise ValueError(f"{source}: no Markdown table with a header and a row")
    title = " ".join(line for line in lines if not line.startswith("|"))
    head, *body = rows
    title_html = esc(title.replace("**", ""))
    return f"<p>{title_html}</p>\n" + table(head, body, numeric=range(1, len(head)))


def results_body(paths: Sequence[str | Path]) -> str:
    """The page's HTML: a section per results table, in the order given."""
    sections = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such results table")
        sections.append(f'<h2 id="{esc(path.stem)}">{esc(path.stem)}</h2>\n'
                        + markdown_table_html(path.read_text(), str(path)))
    return (
        '<p class="note">Each task\'s results table in the paper\'s layout (the <code>.md</code> beside its CSV): '
        "mean ± standard deviation over seeds × 100; on real data the paper's numbers as rows marked (paper).</p>\n"
        + "".join(sections)
    )
