"""Read a user's table (CSV, gzipped CSV or Parquet) as text cells, row by row, with each row's line.

Every cell is read as the text a user sees: CSV cells as written (stripped), Parquet values as text
(``None`` and NaN blank, booleans ``1``/``0``, lists as JSON), so that the two formats of one table map
to the same records. A CSV row's ``line`` is its line in the file (the header is line 1); a Parquet
row's is its 1-based row number.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class TableRow:
    """One data row: its line, its cells by column, or what makes it unreadable."""

    line: int
    cells: dict[str, str]
    problem: str | None = None  # a CSV row whose field count is not the header's


def is_csv(path: str | Path) -> bool:
    """Whether ``path`` names a CSV (``.csv`` or ``.csv.gz``) rather than a Parquet file."""
    return str(path).endswith((".csv", ".csv.gz"))


def read_rows(path: Path, columns: Sequence[str], what: str) -> list[TableRow]:
    """The rows of table ``path``, cells of ``columns`` only; ``what`` names the table in errors.

    A missing file, a missing column or a file that cannot be read is an error naming the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return _read_csv(path, columns, what) if is_csv(path) else _read_parquet(path, columns, what)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, pa.ArrowException) as error:
        raise ValueError(f"{path}: cannot read {what} ({type(error).__name__}: {error})") from error


def _missing(path: Path, header: Sequence[str], columns: Sequence[str], what: str) -> ValueError | None:
    missing = [c for c in columns if c not in header]
    if not missing:
        return None
    return ValueError(f"{path}: {what} lacks column(s) {', '.join(missing)}; its columns are {', '.join(header)}")


def _read_csv(path: Path, columns: Sequence[str], what: str) -> list[TableRow]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:  # -sig: spreadsheet exports' BOM
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        error = _missing(path, header, columns, what)
        if error:
            raise error
        at = {column: header.index(column) for column in columns}
        rows = []
        while True:
            line = reader.line_num + 1
            fields = next(reader, None)
            if fields is None:
                break
            if not fields:  # a blank line holds no row
                continue
            if len(fields) != len(header):
                rows.append(TableRow(line, {}, f"{len(fields)} fields, the header has {len(header)}"))
                continue
            rows.append(TableRow(line, {column: fields[i].strip() for column, i in at.items()}))
    return rows


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value).strip()


def _read_parquet(path: Path, columns: Sequence[str], what: str) -> list[TableRow]:
    header = pq.read_schema(path).names
    error = _missing(path, header, columns, what)
    if error:
        raise error
    table = pq.read_table(path, columns=list(columns))
    values = {column: table[column].to_pylist() for column in columns}
    return [TableRow(i + 1, {c: _text(values[c][i]) for c in columns}) for i in range(table.num_rows)]
