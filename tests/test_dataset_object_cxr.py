"""Object-CXR adapter: annotations -> boxes, rows -> records and rejects; the drawn foreign objects; the demo."""

from pathlib import Path

import numpy as np
import pytest

from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.dataset import prepare_dataset
from imitate.datasets.object_cxr import Adapter, annotation_boxes, format_annotation, image_key
from imitate.demo.objects import CHEST_WINDOW, ForeignObject, coverage, draw_objects, sample_objects
from imitate.images.pixels import read_image

HEADER = "image_name,annotation\n"


def _adapter(root: Path) -> Adapter:
    return load_adapter("object_cxr", {"adapter": "object_cxr", "root": root})


def _write(root: Path, name: str, rows: list[str]) -> None:
    (root / name).write_text(HEADER + "".join(f"{r}\n" for r in rows))


def test_each_object_type_becomes_its_box():
    assert annotation_boxes("0 10 20 30 40") == [[10.0, 20.0, 30.0, 40.0]]
    assert annotation_boxes("0 30 40 10 20") == [[10.0, 20.0, 30.0, 40.0]]  # corners in any order
    assert annotation_boxes("1 5.5 6 15.25 26") == [[5.5, 6.0, 15.25, 26.0]]
    assert annotation_boxes("2 10 10 30 5 25 40 12 22") == [[10.0, 5.0, 30.0, 40.0]]  # the polygon's own extent
    assert annotation_boxes(" 0 1 2 3 4;2 0 0 9 0 4 7;1 8 8 9 9 ") == [
        [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 9.0, 7.0], [8.0, 8.0, 9.0, 9.0]]
    assert annotation_boxes("") == [] and annotation_boxes("  ") == []


@pytest.mark.parametrize(("annotation", "detail"), [
    ("3 1 2 3 4", "object 1 '3 1 2 3 4': unknown type '3'"),
    ("0 1 2 3", "a rectangle or ellipse needs 4 numbers (x1 y1 x2 y2), got 3"),
    ("0 1 2 3 4;1 1 2 3 4 5 6", "object 2 '1 1 2 3 4 5 6': a rectangle or ellipse needs 4"),
    ("2 1 2 3 4", "a polygon needs x y pairs of at least 3 points, got 4"),
    ("2 1 2 3 4 5 6 7", "a polygon needs x y pairs"),
    ("0 1 2 x 4", "not all numbers"),
    ("0 1 2 nan 4", "not finite"),
    ("0 -1 2 3 4", "negative"),
    ("0 1 2 1 4", "zero area"),
    ("2 0 5 3 5 9 5", "zero area"),
    ("0 1 2 3 4;", "object 2 '': empty object"),
])
def test_malformed_annotations_say_which_object_and_why(annotation, detail):
    with pytest.raises(ValueError) as error:
        annotation_boxes(annotation)
    assert detail in str(error.value)


def test_rows_become_records_and_bad_rows_are_rejected_at_their_line(tmp_path):
    _write(tmp_path, "train.csv", [
        "00001.jpg,",  # line 2
        "00002.jpg,0 10 20 30 40;2 1 1 5 1 3 6",
        "",  # a blank line holds no row
        "00004.jpg,1 1 2 3",  # line 5
        "00005.jpg",
        "00006.jpg,0 1 2 3 4,extra",  # line 7
        ",",
        "a.b.jpg,",  # line 9
        "00010.bmp,",
        "sub/00011.jpg,",  # line 11
        "00001.jpg,0 1 2 3 4",
    ])
    _write(tmp_path, "dev.csv", [
        "08001.jpg,1 100 200 150.5 260",  # line 2
        "00002.jpg,",  # same key as a train row
        "08003.JPEG,",  # line 4
    ])
    parsed = _adapter(tmp_path).read()
    records = {r["key"]: r for r in parsed.records.to_pylist()}
    assert sorted(records) == ["00001", "00002", "08001", "08003"]
    assert records["00001"]["labels"] == [0.0] and records["00001"]["boxes"] == []
    assert records["00002"]["labels"] == [1.0] and records["00002"]["boxes"] == [[10, 20, 30, 40], [1, 1, 5, 6]]
    assert records["08001"]["boxes"] == [[100.0, 200.0, 150.5, 260.0]]
    assert [records[k]["split"] for k in sorted(records)] == [None, None, "test", "test"]
    assert records["00002"]["path"] == "train/00002.jpg" and records["08003"]["path"] == "dev/08003.JPEG"
    assert all(r["patient_id"] == r["key"] for r in records.values())
    rejects = {(r["source"], r["line"], r["key"], r["reason"]) for r in parsed.rejects.to_pylist()}
    assert rejects == {
        ("train.csv", 5, "00004", "malformed_annotation"), ("train.csv", 6, "00005", "malformed_row"),
        ("train.csv", 7, "00006", "malformed_row"), ("train.csv", 8, None, "invalid_image_name"),
        ("train.csv", 9, None, "invalid_image_name"), ("train.csv", 10, None, "invalid_image_name"),
        ("train.csv", 11, None, "invalid_image_name"), ("train.csv", 12, "00001", "duplicate_key"),
        ("dev.csv", 3, "00002", "duplicate_key"),
    }
    details = {r["line"]: r["detail"] for r in parsed.rejects.to_pylist() if r["source"] == "train.csv"}
    assert details[5].startswith("object 1 '1 1 2 3': a rectangle or ellipse")
    assert details[12] == "train.csv line 2 names the same key"
    assert parsed.n_input == 13 == parsed.records.num_rows + parsed.rejects.num_rows
    assert image_key("00001.jpg") == "00001" and image_key("x y.jpg") is None


def test_bad_header_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.csv"):
        _adapter(tmp_path).read()
    _write(tmp_path, "train.csv", ["00001.jpg,"])
    with pytest.raises(FileNotFoundError, match=r"dev\.csv"):
        _adapter(tmp_path).read()
    (tmp_path / "dev.csv").write_text("image_path,annotation\n/x/08001.jpg,\n")
    with pytest.raises(ValueError, match=r"dev\.csv: header"):
        _adapter(tmp_path).read()


def test_objects_brighten_exactly_their_shape():
    film = np.full((40, 50), 0.3, np.float32)
    card = ForeignObject("card", "rectangle", ((5, 6), (15, 12)), 0.5)
    coin = ForeignObject("coin", "ellipse", ((20, 10), (30, 20)), 0.9)
    key = ForeignObject("key", "polygon", ((35, 5), (45, 5), (45, 15), (35, 15)), 1.0)
    out = draw_objects(film, [card, coin, key])
    assert np.allclose(out[6:12, 5:15], 1 - 0.7 * 0.5) and np.allclose(out[20:30, 35:45], 0.3)
    assert np.allclose(coverage(key), 1.0)  # a square polygon covers its box whole
    assert coverage(coin).sum() == pytest.approx(np.pi * 25, rel=0.01) and coverage(coin)[0, 0] == 0
    changed = np.zeros(film.shape, bool)
    for obj in (card, coin, key):
        x0, y0, x1, y1 = obj.box
        changed[y0:y1, x0:x1] = True
    assert np.all(out[~changed] == film[~changed]) and np.all(out >= film)
    assert np.all(film == np.float32(0.3))  # the input is left alone
    button = ForeignObject("button", "ellipse", ((0, 0), (20, 20)), 1.0, ((10.0, 10.0, 3.0),))
    assert coverage(button)[10, 10] == 0 and coverage(button)[10, 4] == 1  # a hole shows the film
    with pytest.raises(ValueError, match="not inside the 40x50 film"):
        draw_objects(film, [ForeignObject("card", "rectangle", ((45, 30), (55, 35)), 0.5)])


def test_sampled_objects_are_inside_apart_visible_and_mostly_over_the_chest():
    rng = np.random.default_rng(0)
    height, width = 150, 128
    centres, kinds = [], set()
    for _ in range(200):
        objects = sample_objects(height, width, rng)
        assert 1 <= len(objects) <= 3
        boxes = [obj.box for obj in objects]
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert 0.04 * width <= max(x1 - x0, y1 - y0) <= 0.16 * width
            for a0, b0, a1, b1 in boxes[i + 1:]:  # at least 2 pixels apart
                assert a0 >= x1 + 2 or x0 >= a1 + 2 or b0 >= y1 + 2 or y0 >= b1 + 2
            centres.append(((x0 + x1) / 2 / width, (y0 + y1) / 2 / height))
        kinds |= {(obj.kind, obj.shape) for obj in objects}
        assert all(len(obj.points) in range(4, 8) for obj in objects if obj.shape == "polygon")
    left, right, top, bottom = CHEST_WINDOW
    inside = [left - 0.02 <= x <= right + 0.02 and top - 0.02 <= y <= bottom + 0.02 for x, y in centres]
    assert 0.8 < np.mean(inside) < 0.97
    assert {shape for _, shape in kinds} == {"rectangle", "ellipse", "polygon"} and len(kinds) == 6
    again = sample_objects(height, width, np.random.default_rng(7))
    assert again == sample_objects(height, width, np.random.default_rng(7))


def test_annotation_text_is_the_drawn_geometry():
    objects = [ForeignObject("clip", "rectangle", ((3, 4), (9, 6)), 0.9),
               ForeignObject("key", "polygon", ((1, 1), (5, 1), (4, 6), (2, 5)), 0.9)]
    text = format_annotation(objects)
    assert text == "0 3 4 9 6;2 1 1 5 1 4 6 2 5"
    assert annotation_boxes(text) == [list(map(float, obj.box)) for obj in objects]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("object_cxr")
    _adapter(root).write_demo(DemoSpec(n_images=12, seed=0, image_size=64))
    return root


def test_demo_files_follow_the_real_format(demo_root):
    train = (demo_root / "train.csv").read_text().splitlines()
    dev = (demo_root / "dev.csv").read_text().splitlines()
    assert train[0] + "\n" == HEADER == dev[0] + "\n"
    names = [row.split(",")[0] for row in train[1:] + dev[1:]]
    assert names == [f"{i:05d}.jpg" for i in range(1, 13)] and len(dev) - 1 == 2
    assert sorted(p.name for p in (demo_root / "dev").iterdir()) == ["00011.jpg", "00012.jpg"]
    for row in train[1:] + dev[1:]:
        annotation = row.split(",")[1]
        assert all(v.isdigit() for obj in annotation.split(";") if obj for v in obj.split())  # integers


def test_demo_objects_are_in_the_images(demo_root):
    records = _adapter(demo_root).read().records.to_pylist()
    assert len(records) == 12
    positives = [r for r in records if r["labels"] == [1.0]]
    assert len(positives) == 6 and all(r["boxes"] for r in positives)
    assert {r["split"] for r in positives} == {None, "test"}
    assert not any(r["boxes"] for r in records if r["labels"] == [0.0])
    for record in records:
        pixels = read_image(demo_root / record["path"]).array.astype(float)
        height, width = pixels.shape
        assert min(height, width) == 64 and height != width
        for x0, y0, x1, y1 in (map(int, box) for box in record["boxes"]):
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert max(x1 - x0, y1 - y0) >= 5
            around = np.zeros(pixels.shape, bool)
            around[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = True
            around[y0:y1, x0:x1] = False
            assert pixels[y0:y1, x0:x1].mean() > pixels[around].mean() + 10, (record["key"], (x0, y0, x1, y1))


def test_demo_prepares_with_dev_as_test(demo_root):
    prepared = prepare_dataset(_adapter(demo_root), seed=0, fractions=[100])
    counts = prepared.counts()
    assert counts["input_records"] == counts["records"] == 12 and counts["rejected"] == 0
    assert counts["by_split"] == {"test": 2, "train": 8, "validate": 2}  # 20 % of the 10 train rows (Table II)
    test_keys = [k for k, s in zip(prepared.records["key"].to_pylist(), prepared.records["split"].to_pylist(),
                                   strict=True) if s == "test"]
    assert test_keys == ["00011", "00012"]


def test_demo_spec_is_checked_and_one_film_is_enough(tmp_path):
    for spec in (DemoSpec(0, 0, 64), DemoSpec(4, 0, 16)):
        with pytest.raises(ValueError, match="demo needs"):
            _adapter(tmp_path).write_demo(spec)
    _adapter(tmp_path).write_demo(DemoSpec(n_images=1, seed=0, image_size=32))
    parsed = _adapter(tmp_path).read()
    assert parsed.records["labels"].to_pylist() == [[1.0]] and (tmp_path / "dev.csv").read_text() == HEADER
