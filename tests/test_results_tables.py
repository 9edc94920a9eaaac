"""Paper-layout Markdown tables: columns per task, mean ± std over seeds, the paper's rows on real data."""

import pytest

from imitate.evaluate.rows import RunInfo, result_rows, rows_table
from imitate.tables.gather import CSV_COLUMNS, gather, markdown
from imitate.tables.paper import paper_values


def _rows(task, dataset, method, fraction, seed, metrics):
    info = RunInfo(dataset=dataset, task=task, method=method, run_id="r", checkpoint_sha256=None)
    return result_rows(info, fraction=fraction, seed=seed, metrics=metrics, n_train=10, n_test=5)


def _table(rows):
    return rows_table(rows).select(list(CSV_COLUMNS))


def test_linear_table_has_the_headline_metric_per_dataset_and_mean_std_over_seeds():
    rows = []
    for seed, value in ((0, 0.80), (1, 0.90)):
        rows += _rows("linear_classification", "rsna", "imitate", 10, seed, {"auc_macro": value, "auc:Pneumonia": 0})
        rows += _rows("linear_classification", "covidx", "imitate", 10, seed, {"acc": value, "auc_macro": 0.5})
    text = markdown(_table(rows), "linear_classification")
    header = text.splitlines()[2]
    assert header == "| method | covidx acc 10% | rsna auc_macro 10% |"
    assert "| imitate | 85.00 ± 7.07 | 85.00 ± 7.07 |" in text
    assert "(paper)" not in text


def test_paper_rows_appear_only_for_real_datasets():
    rows = _rows("linear_classification", "chex", "imitate", 1, 0, {"auc_macro": 0.9})
    rows += _rows("linear_classification", "chex", "imitate", 100, 0, {"auc_macro": 0.95})
    rows += _rows("linear_classification", "toy", "imitate", 1, 0, {"auc_macro": 0.7})
    text = markdown(_table(rows), "linear_classification", {"chex": "chexpert"})
    assert "| IMITATE (paper) | 89.10 | 89.70 | – |" in text
    assert "| Random Init (paper) | 56.10 | 65.70 | – |" in text
    assert paper_values("zero_shot", "siim")["IMITATE"] == {"auc_macro": 89.9, "f1_best_macro": 69.1,
                                                             "acc_best_macro": 85.2}


def test_zero_shot_and_retrieval_columns():
    rows = _rows("zero_shot", "five", "m", "all", 0, {"auc_macro": 0.6, "f1_macro": 0.3, "acc_macro": 0.8, "acc": 0.5})
    rows += _rows("zero_shot", "rsna", "m", "all", 0, {"auc_macro": 0.7, "f1_macro": 0.4, "acc_macro": 0.6})
    assert markdown(_table(rows), "zero_shot").splitlines()[2] == (
        "| method | five auc_macro | five f1_macro | five acc | rsna auc_macro | rsna f1_macro | rsna acc_macro |"
    )
    rows = _rows("retrieval", "five", "m", "all", 0, {"precision@10": 0.5, "precision@5": 0.6, "precision@100": 0.2})
    text = markdown(_table(rows), "retrieval", {"five": "chexpert_5x200"})
    assert text.splitlines()[2] == "| method | five precision@5 | five precision@10 | five precision@100 |"
    assert "| GLoRIA (paper) | 69.24 | 67.22 | 53.78 |" in text


def test_the_papers_zero_shot_f1_and_acc_sit_under_the_best_threshold_columns_only():
    metrics = {"auc_macro": 0.9, "f1_macro": 0.5, "acc_macro": 0.7, "f1_best_macro": 0.6, "acc_best_macro": 0.8}
    text = markdown(_table(_rows("zero_shot", "pneumo", "imitate", "all", 0, metrics)), "zero_shot",
                    {"pneumo": "siim"})
    assert text.splitlines()[2] == ("| method | pneumo auc_macro | pneumo f1_macro | pneumo acc_macro | "
                                    "pneumo f1_best_macro | pneumo acc_best_macro |")
    assert "| imitate | 90.00 | 50.00 | 70.00 | 60.00 | 80.00 |" in text
    assert "| IMITATE (paper) | 89.90 | – | – | 69.10 | 85.20 |" in text


def test_a_cell_that_averaged_fewer_seeds_than_its_row_ran_says_how_many():
    rows = []
    for seed, value in ((0, 0.80), (1, float("nan")), (2, 0.90)):
        rows += _rows("linear_classification", "rsna", "random", 10, seed, {"auc_macro": value})
        rows += _rows("linear_classification", "rsna", "random", 100, seed, {"auc_macro": 0.7 + seed / 10})
    rows += _rows("zero_shot", "rsna", "imitate", "all", 0, {"auc_macro": 0.5})  # a pretrained row runs one seed
    text = markdown(_table([r for r in rows if r["task"] == "linear_classification"]), "linear_classification")
    assert "| random | 85.00 ± 7.07 (n=2) | 80.00 ± 10.00 |" in text  # statistics by hand: mean, sample std
    zero_shot = markdown(_table([r for r in rows if r["task"] == "zero_shot"]), "zero_shot")
    assert "| imitate | 50.00 |" in zero_shot and "(n=" not in zero_shot


def test_dense_tables_follow_table_v_and_the_paper_map_sits_under_map_mgca():
    rows = []
    for fraction in (1, 100):
        rows += _rows("segmentation", "siim", "imitate", fraction, 0, {"dice": 0.5, "dice_positive": 0.2})
        rows += _rows("detection", "ocxr", "imitate", fraction, 0, {"map": 0.1, "map_mgca": 0.3, "ap40": 0.2})
    segmentation = markdown(_table([r for r in rows if r["task"] == "segmentation"]), "segmentation", {"siim": "siim"})
    assert segmentation.splitlines()[2] == "| method | siim dice 1% | siim dice 100% |"
    assert "| IMITATE (paper) | 53.90 | 64.50 |" in segmentation
    detection = markdown(_table([r for r in rows if r["task"] == "detection"]), "detection", {"ocxr": "object_cxr"})
    header = "| method | ocxr map 1% | ocxr map 100% | ocxr map_mgca 1% | ocxr map_mgca 100% |"
    assert detection.splitlines()[2] == header
    assert "| imitate | 10.00 | 10.00 | 30.00 | 30.00 |" in detection
    # the paper's mAP is MGCA's (images without predictions skipped); its '-' (below 1 %) shows as –
    assert "| IMITATE (paper) | – | – | 3.90 | 20.30 |" in detection
    assert "| MGCA (paper) | – | – | – | 19.20 |" in detection


def test_task_settings_merge_the_per_dataset_overrides():
    from imitate.evaluate.settings import task_settings

    block = {"datasets": ["rsna", "siim"], "batch_size": 16, "negatives_per_positive": None,
             "per_dataset": {"siim": {"batch_size": 8, "negatives_per_positive": 1}}}
    assert task_settings(block, "siim") == {"batch_size": 8, "negatives_per_positive": 1}
    assert task_settings(block, "rsna") == {"batch_size": 16, "negatives_per_positive": None}
    with pytest.raises(ValueError, match=r"evaluate.segmentation.per_dataset.siim: unknown setting\(s\) epochz"):
        task_settings({**block, "per_dataset": {"siim": {"epochz": 3}}}, "siim", "evaluate.segmentation")


def test_gather_keeps_the_csv_columns_in_a_fixed_order(tmp_path):
    import pyarrow.parquet as pq

    a = rows_table(_rows("retrieval", "b", "m2", "all", 1, {"precision@5": 0.1}))
    b = rows_table(_rows("retrieval", "a", "m1", "all", 0, {"precision@5": 0.2}))
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    table = gather([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert table.column_names == list(CSV_COLUMNS)
    assert table["dataset"].to_pylist() == ["a", "b"]
    with pytest.raises(ValueError, match="no result files"):
        gather([])
