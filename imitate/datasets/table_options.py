"""The options of the table adapter (:mod:`imitate.datasets.table`), checked once, with errors naming the
dataset and the option."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imitate.datasets.base import KINDS, SPLITS

UNCERTAIN, REJECT = "uncertain", "reject"
# Cell text (stripped) -> 1, 0, "uncertain" (then the label's uncertain policy) or "reject"; a user's
# ``values`` are merged over these. A blank cell follows ``blank``.
DEFAULT_VALUES: dict[str, Any] = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": UNCERTAIN, "-1.0": UNCERTAIN}
UNCERTAIN_POLICIES = ("ones", "zeros", "reject")
BLANK_POLICIES = ("zero", "reject")
# Split names (matched lower-cased) -> our splits; a user's ``split_values`` are merged over these.
DEFAULT_SPLIT_VALUES: dict[str, str] = {
    **{name: name for name in SPLITS}, "val": "validate", "valid": "validate", "validation": "validate",
}
COLUMN_ROLES = ("path", "patient", "key", "split", "text", "boxes", "boxes_json", "mask_rle", "mask_path")


@dataclass(frozen=True)
class TableSpec:
    """What the options ask for: the table, the kind, the column of each role and the label mapping."""

    table: str
    kind: str
    columns: Mapping[str, Any]  # role -> column name (boxes: four names)
    label_columns: tuple[str, ...]  # one 0/1 column per label; empty when label_column is used
    label_column: str | None  # one column of class names
    classes: tuple[str, ...]
    separator: str
    values: Mapping[str, Any]
    uncertain: Mapping[str, str]  # label -> policy
    blank: str
    split_values: Mapping[str, str]

    def label_names(self) -> tuple[str, ...]:
        """The labels in order: the label columns, or the classes."""
        return self.label_columns or self.classes

    def needed_columns(self) -> tuple[str, ...]:
        """Every column the options map, in a fixed order, once."""
        names: list[str] = []
        for role in COLUMN_ROLES:
            value = self.columns.get(role)
            names += list(value) if isinstance(value, list) else [] if value is None else [value]
        names += [*self.label_columns, *([self.label_column] if self.label_column else [])]
        return tuple(dict.fromkeys(names))


class _Checker:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, option: str, problem: str) -> ValueError:
        return ValueError(f"dataset {self.name!r} (adapter table): option {option!r} {problem}")

    def text(self, option: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(option, f"must be a non-empty string, got {value!r}")
        return value

    def names(self, option: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(option, f"must be a non-empty list of names, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail(option, f"names a label twice: {value!r}")
        return tuple(value)


def _columns(check: _Checker, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise check.fail("columns", f"must map roles ({', '.join(COLUMN_ROLES)}) to column names, got {value!r}")
    unknown = sorted(set(value) - set(COLUMN_ROLES))
    if unknown:
        raise check.fail("columns", f"has unknown role(s) {', '.join(unknown)} (known: {', '.join(COLUMN_ROLES)})")
    for required in ("path", "patient"):
        if required not in value:
            raise check.fail("columns", f"needs {required!r}: the column of the image path / the patient id")
    for a, b in (("boxes", "boxes_json"), ("mask_rle", "mask_path")):
        if a in value and b in value:
            raise check.fail("columns", f"takes {a!r} or {b!r}, not both")
    columns = {role: check.text(f"columns.{role}", name) for role, name in value.items() if role != "boxes"}
    if "boxes" in value:
        boxes = value["boxes"]
        if not isinstance(boxes, list) or len(boxes) != 4:
            raise check.fail("columns.boxes", f"must be four column names [x0, y0, x1, y1], got {boxes!r}")
        columns["boxes"] = [check.text("columns.boxes", name) for name in boxes]
    return columns


def _labels(check: _Checker, options: Mapping[str, Any], kind: str) -> tuple[tuple[str, ...], str | None, tuple]:
    """(label columns, label column, classes)."""
    has_columns, has_column = options.get("labels") is not None, options.get("label_column") is not None
    if has_columns == has_column:
        raise check.fail("labels", "or 'label_column' (with 'classes') must be given, one of the two")
    if has_columns:
        if options.get("classes") is not None:
            raise check.fail("classes", "goes with 'label_column'; with 'labels' the columns are the labels")
        columns = check.names("labels", options["labels"])
        if kind == "binary" and len(columns) != 1:
            raise check.fail("labels", f"of a binary dataset names one column, got {len(columns)}")
        if kind == "multiclass" and len(columns) < 2:
            raise check.fail("labels", "of a multiclass dataset names two or more one-hot columns")
        return columns, None, ()
    if kind == "binary":
        raise check.fail("label_column", "is for multiclass or multilabel datasets; binary: labels: [column]")
    classes = check.names("classes", options.get("classes"))
    if kind == "multiclass" and len(classes) < 2:
        raise check.fail("classes", "of a multiclass dataset needs two or more names")
    separator = options["separator"]
    if any(separator in name for name in classes):
        raise check.fail("classes", f"names may not hold the separator {separator!r}")
    return (), check.text("label_column", options["label_column"]), classes


def _values(check: _Checker, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise check.fail("values", f"must map cell texts to 1, 0, {UNCERTAIN!r} or {REJECT!r}, got {value!r}")
    merged = dict(DEFAULT_VALUES)
    for text, target in value.items():
        text = str(text).strip()
        if not text:
            raise check.fail("values", "cannot map a blank cell: use option 'blank' (zero or reject)")
        if isinstance(target, bool) or target not in (0, 1, UNCERTAIN, REJECT):
            raise check.fail("values", f"maps {text!r} to {target!r}; expected 1, 0, {UNCERTAIN!r} or {REJECT!r}")
        merged[text] = target
    return merged


def _uncertain(check: _Checker, value: Any, labels: tuple[str, ...]) -> dict[str, str]:
    if isinstance(value, str):
        value = dict.fromkeys(labels, value)
    if not isinstance(value, Mapping) or set(value) != set(labels):
        raise check.fail("uncertain", f"must be one of {UNCERTAIN_POLICIES} or map every label {list(labels)} to one")
    bad = {label: policy for label, policy in value.items() if policy not in UNCERTAIN_POLICIES}
    if bad:
        raise check.fail("uncertain", f"has {bad}; each policy is one of {', '.join(UNCERTAIN_POLICIES)}")
    return dict(value)


def _split_values(check: _Checker, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or any(target not in SPLITS for target in value.values()):
        raise check.fail("split_values", f"must map the table's split names to {', '.join(SPLITS)}, got {value!r}")
    return {**DEFAULT_SPLIT_VALUES, **{str(name).strip().lower(): target for name, target in value.items()}}


def parse_options(name: str, options: Mapping[str, Any]) -> TableSpec:
    """The checked :class:`TableSpec` of dataset ``name``'s options (defaults filled in)."""
    check = _Checker(name)
    if options.get("table") is None:
        raise check.fail("table", "is required: the CSV (.csv, .csv.gz) or Parquet file, relative to root")
    table = check.text("table", options["table"])
    if not table.endswith((".csv", ".csv.gz", ".parquet")):
        raise check.fail("table", f"must name a .csv, .csv.gz or .parquet file, got {table!r}")
    kind = options.get("kind")
    if kind not in KINDS:
        raise check.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(options["separator"], str) or not options["separator"]:
        raise check.fail("separator", f"must be a non-empty string, got {options['separator']!r}")
    label_columns, label_column, classes = _labels(check, options, kind)
    labels = label_columns or classes
    if options["blank"] not in BLANK_POLICIES:
        raise check.fail("blank", f"must be one of {', '.join(BLANK_POLICIES)}, got {options['blank']!r}")
    return TableSpec(
        table=table, kind=kind, columns=_columns(check, options["columns"]), label_columns=label_columns,
        label_column=label_column, classes=classes, separator=options["separator"],
        values=_values(check, options["values"]), uncertain=_uncertain(check, options["uncertain"], labels),
        blank=options["blank"], split_values=_split_values(check, options["split_values"]),
    )
