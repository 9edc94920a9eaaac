import numpy as np
import pytest

from imitate.evaluate.metrics.dense import (
    IOU_THRESHOLDS,
    RECALL_POINTS,
    Detections,
    DiceAccumulator,
    average_precision,
    box_iou,
    detection_metrics,
    dice_scores,
    mean_average_precision,
    mgca_mean_average_precision,
    segmentation_metrics,
)

# ---------------------------------------------------------------- Dice


def _hand_masks() -> tuple[np.ndarray, np.ndarray]:
    """Four 4x4 images: both empty, empty truth with a prediction, partial overlap, missed positive."""
    predicted = np.zeros((4, 4, 4), dtype=bool)
    target = np.zeros((4, 4, 4), dtype=bool)
    predicted[1, 0, 0] = True
    predicted[2, 0, :] = True  # 4 pixels, one of them on the 2-pixel truth
    target[2, 0, 3] = target[2, 1, 3] = True
    target[3, 2:, 2:] = True
    return predicted, target


def test_dice_scores_by_hand():
    predicted, target = _hand_masks()
    np.testing.assert_array_equal(dice_scores(predicted, target), [1.0, 0.0, 2 * 1 / (4 + 2), 0.0])
    assert dice_scores(target, target).tolist() == [1.0] * 4
    assert dice_scores(predicted, target).dtype == np.float64


def test_segmentation_metrics_split_positive_and_negative_images():
    predicted, target = _hand_masks()
    metrics = segmentation_metrics(predicted, target)
    assert metrics["dice"] == pytest.approx((1 + 0 + 1 / 3 + 0) / 4)
    assert metrics["dice_positive"] == pytest.approx((1 / 3 + 0) / 2)
    assert metrics["dice_negative"] == pytest.approx((1 + 0) / 2)
    only_positive = segmentation_metrics(predicted[2:], target[2:])
    assert np.isnan(only_positive["dice_negative"]) and only_positive["dice_positive"] == pytest.approx(1 / 6)
    assert np.isnan(segmentation_metrics(predicted[:2], target[:2])["dice_positive"])


def test_dice_rejects_bad_masks():
    predicted, target = _hand_masks()
    with pytest.raises(ValueError, match="one shape"):
        dice_scores(predicted, target[:, :3])
    with pytest.raises(ValueError, match="bool"):
        dice_scores(predicted.astype(np.float32), target)
    with pytest.raises(ValueError, match="no batch"):
        DiceAccumulator().metrics()


def test_accumulator_equals_the_one_shot_metrics():
    rng = np.random.default_rng(0)
    predicted = rng.random((23, 16, 16)) < 0.3
    target = rng.random((23, 16, 16)) < 0.3
    target[::4] = False  # some negatives
    predicted[::8] = False  # some of them predicted empty
    accumulator = DiceAccumulator()
    for start, stop in [(0, 5), (5, 6), (6, 17), (17, 23)]:
        accumulator.add(predicted[start:stop], target[start:stop])
    assert accumulator.metrics() == pytest.approx(segmentation_metrics(predicted, target))
    assert segmentation_metrics(predicted, target)["dice"] == pytest.approx(dice_scores(predicted, target).mean())


# ---------------------------------------------------------------- detection by hand

TRUTH = np.array([[0.0, 0.0, 10.0, 10.0]])
NONE = np.zeros((0, 4))


def _detections(*scored_boxes: tuple[float, list[float]]) -> Detections:
    return Detections(np.array([box for _, box in scored_boxes]).reshape(-1, 4), [s for s, _ in scored_boxes])


def test_iou_thresholds_and_box_iou():
    assert IOU_THRESHOLDS == (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
    iou = box_iou(TRUTH, [[5, 5, 15, 15], [10, 0, 20, 10], [0, 0, 10, 6.2], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[25 / 175, 0.0, 0.62, 1.0]])
    assert box_iou(TRUTH, NONE).shape == (1, 0)


def test_one_prediction_matches_up_to_its_iou():
    predictions = [_detections((0.9, [0, 0, 10, 6.2]))]  # IoU 0.62
    expected = [1.0] * 5 + [0.0] * 3  # matches at 0.40 ... 0.60, not at 0.65 ... 0.75
    assert [average_precision(predictions, [TRUTH], t) for t in IOU_THRESHOLDS] == expected
    assert mean_average_precision(predictions, [TRUTH]) == 5 / 8


def test_a_better_box_ranked_second_halves_precision_at_strict_thresholds():
    predictions = [_detections((0.9, [0, 0, 10, 5.2]), (0.8, [0, 0, 10, 8]))]  # IoU 0.52 then 0.8
    aps = [average_precision(predictions, [TRUTH], t) for t in IOU_THRESHOLDS]
    assert aps == pytest.approx([1.0] * 3 + [0.5] * 5)  # at >= 0.55 the first is a false positive
    assert detection_metrics(predictions, [TRUTH]) == pytest.approx(
        {"map": 5.5 / 8, "map_mgca": 5.5 / 8, "ap40": 1.0, "ap75": 0.5}
    )


def test_half_recall_samples_51_of_101_recall_points():
    truth = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert average_precision([_detections((0.5, [0, 0, 10, 10]))], [truth], 0.5) == pytest.approx(51 / 101)
    assert len(RECALL_POINTS) == 101


def test_greedy_matching_takes_the_highest_iou_ground_truth():
    truth = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    # The first detection overlaps the first truth at 0.43 and the second at 0.82, so it takes the second;
    # the second detection is the second truth exactly and finds it taken: a false positive.
    predictions = [_detections((0.9, [4, 0, 14, 10]), (0.8, [5, 0, 15, 10]))]
    assert average_precision(predictions, [truth], 0.4) == pytest.approx(51 / 101)


def test_only_the_100_best_detections_of_an_image_count():
    rng = np.random.default_rng(0)
    misses = [(0.9, [50 + x, 50, 60 + x, 60]) for x in rng.random(100)]
    assert average_precision([_detections(*misses, (0.1, [0, 0, 10, 10]))], [TRUTH], 0.5) == 0.0
    assert average_precision([_detections(*misses[:99], (0.1, [0, 0, 10, 10]))], [TRUTH], 0.5) == pytest.approx(0.01)


def test_images_without_predictions_lower_our_map_but_not_mgcas():
    predictions = [_detections((0.9, [0, 0, 10, 10])), _detections()]
    targets = [TRUTH, TRUTH + 20]
    assert mean_average_precision(predictions, targets) == pytest.approx(51 / 101)  # half the boxes are missed
    assert mgca_mean_average_precision(predictions, targets) == 1.0


def test_false_positives_on_empty_images_lower_our_map_but_not_mgcas():
    predictions = [_detections((0.5, [0, 0, 10, 10])), _detections((0.9, [30, 30, 40, 40]))]
    targets = [TRUTH, NONE]
    assert mean_average_precision(predictions, targets) == 0.5  # the false positive ranks first
    assert detection_metrics(predictions, targets)["map_mgca"] == 1.0


def test_no_ground_truth_gives_nan_and_no_prediction_gives_zero():
    assert np.isnan(mean_average_precision([_detections((0.5, [0, 0, 1, 1]))], [NONE]))
    assert np.isnan(detection_metrics([_detections()], [NONE])["map"])
    assert mean_average_precision([_detections()], [TRUTH]) == 0.0
    assert np.isnan(mgca_mean_average_precision([_detections()], [TRUTH]))


def test_detection_inputs_are_checked():
    with pytest.raises(ValueError, match="1 images of predictions but 2"):
        mean_average_precision([_detections()], [TRUTH, TRUTH])
    with pytest.raises(ValueError, match=r"ground truth of image 1: boxes must have shape \(K, 4\)"):
        mean_average_precision([_detections(), _detections()], [TRUTH, np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"ground truth of image 0: box 0 .* x1 >= x0"):
        mean_average_precision([_detections()], [[[10, 0, 0, 10]]])
    with pytest.raises(ValueError, match="finite"):
        Detections(np.array([[0, 0, np.nan, 1]]), [0.5])
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        Detections(TRUTH, [0.5, 0.4])
    with pytest.raises(TypeError, match="predictions\\[0\\] is a dict"):
        mean_average_precision([{"boxes": TRUTH}], [TRUTH])
    with pytest.raises(ValueError, match="IoU thresholds"):
        mean_average_precision([_detections()], [TRUTH], [0.5, 1.5])


# ---------------------------------------------------------------- detection against pycocotools (via torchmetrics)


def _random_set(seed: int, n_images: int = 40) -> tuple[list[Detections], list[np.ndarray]]:
    """Images with 0-4 truths, jittered and spurious predictions with continuous scores, some with none at all."""
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for image in range(n_images):
        n_truth = rng.choice([0, 1, 2, 3, 4], p=[0.3, 0.3, 0.2, 0.1, 0.1])
        corner = rng.uniform(0, 400, (n_truth, 2))
        truth = np.hstack([corner, corner + rng.uniform(20, 120, (n_truth, 2))])
        jitter = truth[:, None, :] + rng.normal(0, 6, (n_truth, 2, 4))  # two guesses per truth
        jitter[..., 2:] = np.maximum(jitter[..., 2:], jitter[..., :2] + 1)
        n_spurious = 120 if image == 0 else rng.integers(0, 4)  # image 0 exceeds the 100-detection cap
        corner = rng.uniform(0, 400, (n_spurious, 2))
        spurious = np.hstack([corner, corner + rng.uniform(10, 100, (n_spurious, 2))])
        boxes = np.vstack([jitter.reshape(-1, 4), spurious])
        if rng.random() < 0.2:
            boxes = boxes[:0]
        predictions.append(Detections(boxes, rng.random(len(boxes))))
        targets.append(truth)
    return predictions, targets


def _torchmetrics_map(predictions: list[Detections], targets: list[np.ndarray], thresholds: list[float]) -> float:
    import pycocotools  # noqa: F401  (test extra: the COCO reference behind torchmetrics' mAP)
    import torch
    from torchmetrics import detection

    def labels(n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.long)

    metric = detection.MeanAveragePrecision(
        iou_thresholds=thresholds,
        # pycocotools' default recall grid; torchmetrics' own is a float32 linspace whose points miss 0.07, 0.3 ...
        # by ~1e-8, which moves the AP of a set where such a recall is reached exactly (see the grid test below).
        rec_thresholds=RECALL_POINTS.tolist(),
        box_format="xyxy",
        backend="pycocotools",
    )
    metric.warn_on_many_detections = False
    metric.update(
        [
            dict(boxes=torch.from_numpy(p.boxes), scores=torch.from_numpy(p.scores), labels=labels(len(p.scores)))
            for p in predictions
        ],
        [dict(boxes=torch.from_numpy(t), labels=labels(len(t))) for t in targets],
    )
    return float(metric.compute()["map"])


@pytest.mark.parametrize("seed", range(3))
def test_map_matches_pycocotools(seed):
    predictions, targets = _random_set(seed)
    assert sum(len(t) == 0 for t in targets) and sum(len(p.scores) == 0 for p in predictions)
    expected = _torchmetrics_map(predictions, targets, list(IOU_THRESHOLDS))
    assert mean_average_precision(predictions, targets) == pytest.approx(expected, abs=1e-6)
    assert 0.05 < expected < 0.95  # a set where matching, ranking and misses all matter


@pytest.mark.parametrize("seed", range(3))
def test_mgca_map_matches_pycocotools_on_the_images_with_truth_and_predictions(seed):
    predictions, targets = _random_set(seed)
    kept = [i for i in range(len(targets)) if len(targets[i]) and len(predictions[i].scores)]
    expected = _torchmetrics_map([predictions[i] for i in kept], [targets[i] for i in kept], list(IOU_THRESHOLDS))
    assert mgca_mean_average_precision(predictions, targets) == pytest.approx(expected, abs=1e-6)
    assert mgca_mean_average_precision(predictions, targets) > mean_average_precision(predictions, targets)


@pytest.mark.parametrize("threshold", [0.4, 0.55, 0.75])
def test_single_threshold_ap_matches_pycocotools(threshold):
    predictions, targets = _random_set(7)
    expected = _torchmetrics_map(predictions, targets, [threshold])
    assert average_precision(predictions, targets, threshold) == pytest.approx(expected, abs=1e-6)


def test_recalls_on_the_grid_match_pycocotools():
    # Ten truths in all, so recalls are k/10 and fall exactly on recall points.
    predictions, targets = _random_set(3, n_images=60)
    kept_truth = np.cumsum([len(t) for t in targets]) <= 10
    targets = [t if keep else t[:0] for t, keep in zip(targets, kept_truth, strict=True)]
    assert sum(map(len, targets)) == 10
    expected = _torchmetrics_map(predictions, targets, list(IOU_THRESHOLDS))
    assert mean_average_precision(predictions, targets) == pytest.approx(expected, abs=1e-6)


def test_map_ranks_every_detection_and_only_map_mgca_cuts_at_the_confidence_threshold():
    truth = [np.array([[0.0, 0, 10, 10]]), np.array([[20.0, 20, 40, 40]]), np.zeros((0, 4))]
    predictions = [
        Detections(np.array([[0.0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.6])),  # a hit, a miss
        Detections(np.array([[20.0, 20, 40, 40]]), np.array([0.3])),  # a hit below MGCA's 0.5
        Detections(np.array([[5.0, 5, 15, 15]]), np.array([0.2])),  # a miss on the healthy image
    ]
    cut = [Detections(p.boxes[p.scores >= 0.5], p.scores[p.scores >= 0.5]) for p in predictions]
    thresholds = list(IOU_THRESHOLDS)
    metrics = detection_metrics(predictions, truth, conf_threshold=0.5)
    before = detection_metrics(predictions, truth, conf_threshold=0.5, map_conf_cut=True)
    assert metrics["map"] == pytest.approx(_torchmetrics_map(predictions, truth, thresholds), abs=1e-6)
    assert before["map"] == pytest.approx(_torchmetrics_map(cut, truth, thresholds), abs=1e-6)
    # MGCA's: the confident detections of the one image with truth and a confident detection
    assert metrics["map_mgca"] == before["map_mgca"] == pytest.approx(
        _torchmetrics_map(cut[:1], truth[:1], thresholds), abs=1e-6)
    # by hand (exact boxes, so every IoU threshold alike): ranked hit, miss, hit, miss over 2 truths gives
    # precision 1 up to recall 0.5 (51 of 101 recall points) and 2/3 up to 1; cut at 0.5, recall stops at 0.5
    assert metrics["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert before["map"] == pytest.approx(51 / 101)
    assert metrics["map_mgca"] == pytest.approx(1.0)


def test_a_test_set_of_rsna_size_is_scored():
    # correctness at full size only; how fast it is scored is a benchmark's business, not a test's
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 400, (5_337, 3, 2))
    targets = list(np.concatenate([corner, corner + rng.uniform(20, 120, (5_337, 3, 2))], axis=-1))
    predictions = [Detections(t.repeat(10, axis=0) + rng.uniform(-5, 5, (30, 4)), rng.random(30)) for t in targets]
    metrics = detection_metrics(predictions, targets)
    assert metrics["map"] > 0.5
