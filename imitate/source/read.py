"""Read a CSV or Parquet table's mapped columns as text, and turn its ids into the pipeline's int64 ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import duckdb
import pyarrow as pa

_CANONICAL_INT = re.compile(r"0|[1-9][0-9]*")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Columns:
    """The table's column of each role; ``report`` (the whole text) excludes ``findings``/``impression``."""

    path: str
    patient: str
    study: str
    image: str | None = None
    view: str | None = None
    split: str | None = None
    report: str | None = None
    findings: str | None = None
    impression: str | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str | None]) -> Columns:
        """Validated columns from ``{role: column}`` (``data.columns``)."""
        roles = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - roles)
        if unknown:
            raise ValueError(f"unknown column role(s) {unknown}; expected some of {sorted(roles)}")
        missing = sorted({"path", "patient", "study"} - {k for k, v in mapping.items() if v})
        if missing:
            raise ValueError(f"column role(s) {missing} must name a column")
        columns = cls(**{k: v for k, v in mapping.items() if v})
        if columns.report and (columns.findings or columns.impression):
            raise ValueError("map either report (the whole text) or findings/impression, not both")
        if not (columns.report or columns.findings or columns.impression):
            raise ValueError("map report (the whole text) or findings and/or impression")
        return columns

    def mapped(self) -> dict[str, str]:
        """``{role: column}`` of the roles given."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


def _source_sql(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "read_parquet($path)"
    if name.endswith((".csv", ".csv.gz")):
        return "read_csv($path, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"')"
    raise ValueError(f"{path}: a table must be .csv, .csv.gz or .parquet")


_TEXT_ROLES = ("report", "findings", "impression")


def _select(role: str, column: str) -> str:
    """SQL of one mapped column as text: ids and paths stripped, texts verbatim; blank cells null."""
    cell = f"CAST(\"{column.replace(chr(34), chr(34) * 2)}\" AS VARCHAR)"
    if role in _TEXT_ROLES:
        return f"CASE WHEN regexp_full_match({cell}, '\\s*') THEN NULL ELSE {cell} END AS {role}"
    return f"nullif(regexp_replace({cell}, '^\\s+|\\s+$', '', 'g'), '') AS {role}"


def read_table(path: Path, columns: Columns) -> pa.Table:
    """The mapped columns of the table at ``path`` as strings named by role, in file order, with ``row``
    (1-based data row). Ids, paths, views and splits are stripped, report texts kept verbatim; blank
    cells are null. Errors name the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table file")
    source = _source_sql(path)
    mapped = columns.mapped()
    con = duckdb.connect(":memory:")
    try:
        header = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}", {"path": str(path)}).fetchall()]
        missing = sorted(set(mapped.values()) - set(header))
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} (it has {header[:20]})")
        selected = ", ".join(_select(role, column) for role, column in mapped.items())
        # without ORDER BY, DuckDB keeps the file's order (preserve_insertion_order): rows are numbered here
        table = con.sql(f"SELECT {selected} FROM {source}", params={"path": str(path)}).to_arrow_table()
    except duckdb.Error as err:
        raise ValueError(f"{path}: cannot read the table: {str(err).splitlines()[0]}") from err
    finally:
        con.close()
    return table.add_column(0, "row", pa.array(range(1, table.num_rows + 1), pa.int64()))


def stable_id(text: str) -> int:
    """A 63-bit id of a non-integer ``text``: the first 8 bytes of its SHA-256, shifted right by one."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def int_ids(values: Sequence[str | None], kind: str, where: Path) -> tuple[list[int | None], list[tuple[str, int]]]:
    """int64 ids of ``values``: canonical decimal integers as they are, any other text by :func:`stable_id`.

    Returns the ids (null stays null) and the ``(original, id)`` pairs of the hashed ones; two originals
    with one id (a hash collision, or ``7`` and a text hashing to 7) are an error naming both.
    """
    mapping: dict[str, int] = {}
    for value in set(values) - {None}:
        if _CANONICAL_INT.fullmatch(value) and int(value) <= _INT64_MAX:
            mapping[value] = int(value)
        else:
            mapping[value] = stable_id(value)
    owners: dict[int, str] = {}
    for original in sorted(mapping):
        number = mapping[original]
        if number in owners:
            raise ValueError(f"{where}: {kind} ids {owners[number]!r} and {original!r} both map to {number}")
        owners[number] = original
    hashed = sorted((o, i) for o, i in mapping.items() if not (_CANONICAL_INT.fullmatch(o) and i == int(o)))
    return [None if v is None else mapping[v] for v in values], hashed
