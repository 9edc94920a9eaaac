"""MIMIC 5x200: GLoRIA's class definition on MIMIC-CXR labels, test split only, with report texts."""

import pyarrow.compute as pc
import pytest

from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.dataset import prepare_dataset
from imitate.datasets.mimic_5x200 import CLASSES


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic5x200")
    adapter = load_adapter("mimic_5x200", {"adapter": "mimic_5x200", "root": root})
    adapter.write_demo(DemoSpec(n_images=300, seed=0, image_size=48))
    return root


def test_demo_prepares_balanced_test_set_with_texts(demo_root):
    adapter = load_adapter("mimic_5x200", {"adapter": "mimic_5x200", "root": demo_root, "options": {"per_class": 4}})
    prepared = prepare_dataset(adapter, seed=0, fractions=[100])
    counts = prepared.counts()
    assert counts["input_records"] == counts["records"] + counts["rejected"]
    assert counts["by_split"] == {"test": 20} and counts["train_subsets"] == {}
    # GLoRIA's rule, shared with CheXpert 5x200, names why a test study is not eligible
    assert {"no_class_positive", "several_classes_positive", "not_selected"} <= set(counts["rejects_by_reason"])
    labels = prepared.records["labels"].to_pylist()
    assert [sum(row[i] for row in labels) for i in range(len(CLASSES))] == [4.0] * 5
    assert prepared.records["text"].null_count == 0
    assert len(set(prepared.records["patient_id"].to_pylist())) <= 20
    assert pc.all(pc.starts_with(prepared.records["path"], "mimic-cxr")).as_py()
    other_seed = load_adapter("m", {"adapter": "mimic_5x200", "root": demo_root,
                                    "options": {"per_class": 4, "seed": 1}}).read()
    assert other_seed.records["key"].to_pylist() != adapter.read().records["key"].to_pylist()


def test_too_few_candidates_is_a_clear_error(demo_root):
    adapter = load_adapter("m", {"adapter": "mimic_5x200", "root": demo_root, "options": {"per_class": 500}})
    with pytest.raises(ValueError, match=r"only \d+ test studies qualify for 'Atelectasis', 500 asked"):
        adapter.read()



def test_allow_fewer_takes_every_candidate_of_a_short_class(demo_root):
    def read(options):
        return load_adapter("m", {"adapter": "mimic_5x200", "root": demo_root, "options": options}).read()

    drawn = read({"per_class": 4})
    not_selected = [r for r in drawn.rejects.to_pylist() if r["reason"] == "not_selected"]
    everything = read({"per_class": 500, "allow_fewer": True})
    assert everything.records.num_rows == drawn.records.num_rows + len(not_selected)
    assert "not_selected" not in {r["reason"] for r in everything.rejects.to_pylist()}
    assert everything.records.num_rows + everything.rejects.num_rows == everything.n_input
