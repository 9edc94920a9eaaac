"""Raw data is read-only to the workflow: the load-time check of rule outputs against raw-data roots."""

from __future__ import annotations

import pytest

from imitate.preflight.raw_roots import RawDataWriteError, check_outputs_outside_raw_roots, find_violations


def _violations(outputs, roots, workdir="/work/run"):
    return [(v.rule, v.key) for v in find_violations(outputs, roots, workdir)]


def test_an_output_inside_a_real_root_is_refused():
    outputs = [("dataset_demo_rsna", "/data/rsna/stage_2_train_labels.csv"), ("dataset", "results/x.parquet")]
    assert _violations(outputs, {"datasets.rsna.root": "/data/rsna"}) == [("dataset_demo_rsna", "datasets.rsna.root")]


def test_the_root_itself_counts_as_inside():
    assert _violations([("demo_data", "/data/physionet")], {"data.root": "/data/physionet/"}) == [
        ("demo_data", "data.root")
    ]


def test_roots_under_results_hold_demo_data_and_may_be_written():
    outputs = [("demo_data", "results/demo_data/physionet.org/files/mimic-cxr-jpg/2.0.0/x.csv.gz")]
    assert _violations(outputs, {"data.root": "results/demo_data/physionet.org/files"}) == []
    # the same tree named by an absolute path is the same tree
    assert _violations(outputs, {"data.root": "/work/run/results/demo_data/physionet.org/files"}) == []


def test_a_sibling_with_a_common_name_prefix_is_not_inside():
    outputs = [("x", "/data/rsna-pneumonia/out.csv")]
    assert _violations(outputs, {"datasets.rsna.root": "/data/rsna"}) == []


def test_a_root_that_climbs_out_of_results_is_guarded():
    outputs = [("x", "raw/labels.csv")]
    assert _violations(outputs, {"datasets.toy.root": "results/../raw"}) == [("x", "datasets.toy.root")]


def test_a_root_holding_the_working_directory_guards_every_output():
    outputs = [("tables", "results/tables/{task}.csv"), ("sections", "logs/sections.log")]
    assert _violations(outputs, {"data.root": "."}) == [("tables", "data.root"), ("sections", "data.root")]


def test_a_wildcard_could_expand_into_a_root_below_its_fixed_directories():
    roots = {"datasets.rsna.root": "/work/run/raw/rsna"}
    assert _violations([("copy", "raw/{name}/labels.csv")], roots) == [("copy", "datasets.rsna.root")]
    assert _violations([("copy", "results/{name}/labels.csv")], roots) == []


def test_the_error_names_the_rule_the_path_and_the_root():
    config = {"data": {"root": "/data/physionet.org/files"}, "datasets": {"rsna": {"root": "/data/rsna"}}}
    with pytest.raises(RawDataWriteError) as caught:
        check_outputs_outside_raw_roots([("dataset_demo_rsna", "/data/rsna/labels.csv")], config, "/work/run")
    message = str(caught.value)
    assert "dataset_demo_rsna" in message and "'/data/rsna/labels.csv'" in message
    assert "datasets.rsna.root = '/data/rsna'" in message
    check_outputs_outside_raw_roots([("tables", "results/tables/a.csv")], config, "/work/run")
