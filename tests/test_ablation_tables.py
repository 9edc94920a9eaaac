"""Ablation tables: experiments as rows from evaluation files, numbers checked by hand, the paper beside ours."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imitate.tables.ablation import ablation_markdown, ablation_plot, ablation_rows

COLUMNS = [{"task": "linear_classification", "dataset": "chexpert", "fraction": 1, "metric": "auc_macro"},
           {"task": "segmentation", "dataset": "siim_512", "fraction": 1, "metric": "dice"}]
SPEC = {"title": "Table X", "paper": "X", "method": "imitate", "plot": None, "columns": COLUMNS,
        "rows": [{"experiment": "without_cicl", "label": "w/o CICL", "x": None},
                 {"experiment": "base", "label": "IMITATE", "x": None}]}
VALUES = {("without_cicl", "linear_classification"): [0.80, 0.84], ("without_cicl", "segmentation"): [0.30, 0.34],
          ("base", "linear_classification"): [0.90, 0.88], ("base", "segmentation"): [0.50, 0.56]}


def _part(path, experiment, task, dataset, metric, values, method="imitate", fractions=("1", "10")):
    rows = [{"dataset": dataset, "task": task, "fraction": fraction, "method": method, "experiment": experiment,
             "experiment_sha256": "ab" * 32, "seed": seed, "metric": name, "value": value + (fraction == "10"),
             "run_id": "r", "checkpoint_sha256": "cd" * 32}
            for fraction in fractions for seed, value in enumerate(values) for name in (metric, "other_metric")]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def parts(tmp_path):
    out = []
    for (experiment, task), values in VALUES.items():
        column = next(c for c in COLUMNS if c["task"] == task)
        out.append(_part(tmp_path / f"{experiment}-{task}.parquet", experiment, task, column["dataset"],
                         column["metric"], values))
    # the random baseline of the same task: not an experiment's encoder, never in an ablation table
    out.append(_part(tmp_path / "random.parquet", "base", "segmentation", "siim_512", "dice", [0.0, 0.1],
                     method="random_init"))
    return out


def test_rows_hold_exactly_the_cells_of_the_spec(parts):
    table = ablation_rows(parts, SPEC)
    rows = table.to_pylist()
    assert len(rows) == 2 * 2 * 2  # experiments x columns x seeds
    assert {(r["experiment"], r["task"], r["fraction"], r["metric"]) for r in rows} == {
        (e, c["task"], "1", c["metric"]) for e in ("without_cicl", "base") for c in COLUMNS}
    assert [r["label"] for r in rows][:4] == ["w/o CICL"] * 4  # the spec's row order
    by_cell = {(r["experiment"], r["task"], r["seed"]): r["value"] for r in rows}
    for (experiment, task), values in VALUES.items():
        assert [by_cell[(experiment, task, seed)] for seed in range(2)] == values


def test_markdown_shows_mean_and_sample_std_per_experiment(parts):
    text = ablation_markdown(ablation_rows(parts, SPEC), SPEC)
    lines = text.splitlines()
    assert lines[2] == "| experiment | chexpert auc_macro 1% | siim_512 dice 1% |"
    for label, experiment in (("w/o CICL", "without_cicl"), ("IMITATE", "base")):
        cells = [np.array(VALUES[(experiment, t)]) * 100 for t in ("linear_classification", "segmentation")]
        expected = " | ".join(f"{c.mean():.2f} ± {c.std(ddof=1):.2f}" for c in cells)
        assert f"| {label} | {expected} |" in lines
    assert "(paper)" not in text  # demo data: no paper rows


def test_on_real_data_the_paper_s_rows_follow_ours(parts):
    text = ablation_markdown(ablation_rows(parts, SPEC), SPEC, real={"chexpert": "chexpert", "siim_512": "siim"})
    # Table X of the paper: w/o CICL 87.9 (CheXpert AUC 1%) and 26.8 (SIIM Dice 1%); IMITATE 89.1 and 53.9
    assert "| w/o CICL (paper) | 87.9 | 26.8 |" in text
    assert "| IMITATE (paper) | 89.1 | 53.9 |" in text


def test_a_cell_with_fewer_seeds_says_how_many(parts, tmp_path):
    broken = _part(tmp_path / "nan.parquet", "base", "linear_classification", "chexpert", "auc_macro",
                   [0.9, float("nan")])
    spec = {**SPEC, "rows": SPEC["rows"][1:], "columns": COLUMNS[:1]}
    assert "| IMITATE | 90.00 (n=1) |" in ablation_markdown(ablation_rows([broken], spec), spec)


def test_a_missing_cell_is_an_error_naming_it(parts):
    spec = {**SPEC, "columns": [*COLUMNS, {**COLUMNS[0], "fraction": 100}]}
    with pytest.raises(ValueError, match=r"\('without_cicl', 'chexpert auc_macro 100%'\)"):
        ablation_rows(parts, spec)


def test_the_plot_is_written_for_a_sweep_and_for_bars(parts, tmp_path):
    table = ablation_rows(parts, SPEC)
    ablation_plot(table, SPEC, tmp_path / "bars.png")
    sweep = {**SPEC, "plot": "pretrain.lambda", "rows": [{**SPEC["rows"][0], "x": 0.5}, {**SPEC["rows"][1], "x": 0.2}]}
    ablation_plot(table, sweep, tmp_path / "sweep.png")
    for name in ("bars.png", "sweep.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_xi_shows_each_experiment_s_trainable_parameters_from_its_card(parts):
    from imitate.tables.ablation import trainable_millions

    cards = {"without_cicl": {"trainable_parameters": {"image": 25_557_032, "text": 1_311_744}},
             "base": {"trainable_parameters": {"image": 25_557_032, "text": 787_968}}}
    millions = {name: trainable_millions(card) for name, card in cards.items()}
    spec = {**SPEC, "trainable_parameters": True, "paper": "XI",
            "rows": [{**SPEC["rows"][0], "label": "Unfreeze_1"}, SPEC["rows"][1]]}
    text = ablation_markdown(ablation_rows(parts, spec), spec, {"chexpert": "chexpert"}, millions)
    assert "| experiment | trainable parameters (M) | chexpert auc_macro 1% |" in text
    assert "| Unfreeze_1 | 26.9 | " in text and "| IMITATE | 26.3 | " in text  # (25.56 + 1.31) M, (25.56 + 0.79) M
    assert "| Unfreeze_1 (paper) | 59.1 | 87.2 | – |" in text  # Table XI: 59.1 M, CheXpert 87.2
    with pytest.raises(ValueError, match="trainable parameters given for"):
        ablation_markdown(ablation_rows(parts, spec), spec, millions={"base": 1.0})
