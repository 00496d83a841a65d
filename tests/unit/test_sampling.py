"""Stratified sampling: exact size, largest-remainder quotas, no duplicates, seeded."""

import polars as pl
import pytest

from marc_ops.data import allocate_largest_remainder, stratified_sample


def _manifest(counts: dict[str, int]) -> pl.DataFrame:
    rows = [
        {"problem_id": f"{cat}-{i}", "category": cat} for cat, count in counts.items() for i in range(count)
    ]
    return pl.DataFrame(rows)


def test_largest_remainder_hand_computed():
    # n=10 over 50/30/20 of 100 → 5, 3, 2 exactly.
    assert allocate_largest_remainder({"a": 50, "b": 30, "c": 20}, 10) == {"a": 5, "b": 3, "c": 2}
    # n=4 over 1/1/1 → quotas 4/3 each: floors 1,1,1, one leftover; equal remainders → name order.
    assert allocate_largest_remainder({"b": 1, "a": 1, "c": 1}, 3) == {"a": 1, "b": 1, "c": 1}
    assert allocate_largest_remainder({"b": 2, "a": 2, "c": 2}, 4) == {"a": 2, "b": 1, "c": 1}
    # 7 over 6/3/1 of 10 → 4.2, 2.1, 0.7: floors 4,2,0 with one leftover to c (0.7).
    assert allocate_largest_remainder({"a": 6, "b": 3, "c": 1}, 7) == {"a": 4, "b": 2, "c": 1}


def test_allocation_rejects_more_than_available():
    with pytest.raises(ValueError, match="cannot sample 11 rows from a manifest of 10"):
        allocate_largest_remainder({"a": 10}, 11)


@pytest.mark.parametrize("n", [1, 7, 50, 333, 999])
def test_exact_size_and_quota_within_one_row(n):
    counts = {"CLEVRER": 400, "LLaVA-Video-178K": 250, "Chart": 211, "OCR": 100, "Math": 38}
    manifest = _manifest(counts)
    sample = stratified_sample(manifest, n, seed=3)
    assert sample.height == n
    assert sample["problem_id"].n_unique() == n
    got = dict(sample.group_by("category").len().iter_rows())
    total = sum(counts.values())
    for cat, count in counts.items():
        assert abs(got.get(cat, 0) - n * count / total) < 1.0


def test_same_seed_same_rows_other_seed_other_rows():
    manifest = _manifest({"a": 300, "b": 200})
    first = stratified_sample(manifest, 100, seed=7)
    assert first.equals(stratified_sample(manifest, 100, seed=7))
    assert not first.equals(stratified_sample(manifest, 100, seed=8))


def test_duplicate_problem_ids_count_once():
    manifest = pl.concat([_manifest({"a": 5}), _manifest({"a": 5})])
    sample = stratified_sample(manifest, 5, seed=0)
    assert sorted(sample["problem_id"].to_list()) == [f"a-{i}" for i in range(5)]
    with pytest.raises(ValueError, match="from a manifest of 5"):
        stratified_sample(manifest, 6, seed=0)


def test_keeps_manifest_order():
    manifest = _manifest({"a": 50, "b": 50})
    sample = stratified_sample(manifest, 20, seed=1)
    order = {pid: i for i, pid in enumerate(manifest["problem_id"])}
    positions = [order[pid] for pid in sample["problem_id"]]
    assert positions == sorted(positions)
