"""Patient-level splits, the leakage check and the nested training subsets, all seeded.

Rows that carry an official split keep it. The others form a pool divided by patient: every patient's
images go to one split, so no patient can be in two (MGCA's CheXpert split, which picks validation rows
by position but drops them by index label, and its SIIM row-level split both break this).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imitate.datasets.base import SPLITS


class LeakageError(ValueError):
    """Some patient has images in more than one split."""


def _target(amount: float, pool: int, split: str) -> int:
    if amount < 0:
        raise ValueError(f"split draw for {split!r} must be >= 0, got {amount}")
    return round(amount * pool) if amount < 1 else int(amount)


def draw_splits(records: pa.Table, draw: Mapping[str, float], seed: int) -> pa.Table:
    """Fill the null ``split`` entries: ``draw`` gives validate/test as a share (< 1) or an image count.

    The target of a share is ``round(share * pool)`` images. Patients of the pool (sorted, then shuffled
    with ``seed``) are walked for test, then for validate: a patient whose images all fit in what the
    split still lacks joins it whole, one whose images would take it past its target is passed over
    (left for the next split or train), and the walk stops once the target is reached. So each split
    holds exactly its target unless no patient left fits the last gap (then it holds fewer, never more),
    a patient's images are never divided, and when every patient has one image the split is simply the
    next ``target`` patients of the shuffle. The patients no split took are train. A patient whose
    images already have an official split cannot also be in the pool (that is leakage in the raw split).
    """
    unknown = set(draw) - {"validate", "test"}
    if unknown:
        raise ValueError(f"split draw takes 'validate' and 'test' only, got {sorted(unknown)}")
    split = records["split"].to_pylist()
    patients = records["patient_id"].to_pylist()
    pool = [i for i, s in enumerate(split) if s is None]
    if not pool:
        return records
    by_patient: dict[str, list[int]] = {}
    for i in pool:
        by_patient.setdefault(patients[i], []).append(i)
    order = sorted(by_patient)
    shuffled = [order[j] for j in np.random.default_rng(seed).permutation(len(order))]
    targets = [(name, _target(float(draw.get(name, 0)), len(pool), name)) for name in ("test", "validate")]
    if sum(t for _, t in targets) > len(pool):
        raise ValueError(f"split draw {dict(draw)} asks for more than the {len(pool)} images of the pool")
    assigned = list(split)
    left = shuffled
    for name, target in targets:
        taken, passed = 0, []
        for position, patient in enumerate(left):
            if taken >= target:
                passed.extend(left[position:])
                break
            images = by_patient[patient]
            if taken + len(images) > target:
                passed.append(patient)  # would overshoot: left for the next split or train
                continue
            for i in images:
                assigned[i] = name
            taken += len(images)
        left = passed
    for patient in left:
        for i in by_patient[patient]:
            assigned[i] = "train"
    return records.set_column(records.schema.get_field_index("split"), "split", pa.array(assigned, pa.string()))


def check_leakage(records: pa.Table, source: str) -> None:
    """Raise :class:`LeakageError` naming ``source`` and the first patients found in two splits."""
    bad_splits = sorted(set(records["split"].to_pylist()) - set(SPLITS))
    if bad_splits:
        raise ValueError(f"{source}: unknown split name(s) {bad_splits}; expected {', '.join(SPLITS)}")
    seen: dict[str, str] = {}
    leaks: dict[str, set[str]] = {}
    for patient, split in zip(records["patient_id"].to_pylist(), records["split"].to_pylist(), strict=True):
        first = seen.setdefault(patient, split)
        if first != split:
            leaks.setdefault(patient, {first}).add(split)
    if leaks:
        shown = ", ".join(f"{p} ({'/'.join(sorted(s))})" for p, s in sorted(leaks.items())[:5])
        raise LeakageError(f"{source}: {len(leaks)} patient(s) in more than one split, e.g. {shown}")


def nested_subsets(
    keys: Sequence[str], fractions: Sequence[float], seed: int | tuple[int, ...]
) -> dict[float, list[str]]:
    """Training subsets for each percentage in ``fractions``, nested (1 % ⊂ 10 % ⊂ 100 %).

    One seeded permutation of the sorted keys (``seed``: an int or a tuple of ints, numpy's seed entropy);
    fraction f takes its first ceil(f/100 · n) keys (at least one), so every method sees the same images
    for a given subset seed, and 100 % is the whole of ``keys``.
    """
    ranked_source = sorted(keys)
    order = np.random.default_rng(seed).permutation(len(ranked_source))
    ranked = [ranked_source[i] for i in order]
    out = {}
    for fraction in fractions:
        if not 0 < fraction <= 100:
            raise ValueError(f"subset fractions are percentages in (0, 100], got {fraction}")
        n = max(1, int(np.ceil(fraction / 100.0 * len(ranked))))
        out[float(fraction)] = sorted(ranked[:n])
    return out


def subsets_table(
    records: pa.Table, fractions: Sequence[float], seed: int, subset_seeds: Sequence[int] | None = None
) -> pa.Table:
    """The frozen training subsets drawn from the train split's images.

    Without ``subset_seeds``: one row per (fraction, key), one draw with ``seed`` that every evaluation seed
    trains on (MGCA's fixed subset). With them (``evaluate.subsets_per_seed``): one draw per evaluation
    seed s, with the seed entropy (``seed``, s), in rows (seed, fraction, key), so that the spread over
    seeds includes the choice of the training images.
    """
    keys = records.filter(pc.equal(records["split"], "train"))["key"].to_pylist()
    draws = [(None, seed)] if subset_seeds is None else [(s, (seed, s)) for s in sorted(set(subset_seeds))]
    rows = [(draw, f, k) for draw, entropy in draws if keys
            for f, subset in sorted(nested_subsets(keys, fractions, entropy).items()) for k in subset]
    columns = {"fraction": pa.array([r[1] for r in rows], pa.float64()),
               "key": pa.array([r[2] for r in rows], pa.string())}
    if subset_seeds is not None:
        columns = {"seed": pa.array([r[0] for r in rows], pa.int64()), **columns}
    return pa.table(columns)
