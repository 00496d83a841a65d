"""Category-stratified sampling of the training subset (the paper's 5K sample)."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl


def allocate_largest_remainder(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over categories in proportion to ``counts`` (Hamilton's method).

    Every quota is floor or ceil of ``n * share``; the leftover rows go to the largest
    fractional parts, ties broken by category name so the result never depends on order.
    """
    total = sum(counts.values())
    if n > total:
        raise ValueError(f"cannot sample {n} rows from a manifest of {total}; lower train_size")
    # Exact integer arithmetic: quota_k = n * c_k / total as (floor, remainder numerator).
    floors = {cat: (n * c) // total for cat, c in counts.items()}
    remainders = {cat: (n * c) % total for cat, c in counts.items()}
    leftover = n - sum(floors.values())
    order = sorted(counts, key=lambda cat: (-remainders[cat], cat))
    for cat in order[:leftover]:
        floors[cat] += 1
    return floors


def _category_seed(seed: int, category: str) -> int:
    digest = hashlib.sha256(f"{seed}:{category}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def stratified_sample(manifest: pl.DataFrame, n: int, *, seed: int, by: str = "category") -> pl.DataFrame:
    """Exactly ``n`` rows whose per-category counts follow the manifest's category shares.

    Rows with a repeated ``problem_id`` count once (first occurrence). Each category draws
    with its own generator seeded from ``(seed, category)``, so adding a category does not
    reshuffle the others. Output keeps the manifest's row order.
    """
    if n < 0:
        raise ValueError(f"train_size must be >= 0, got {n}")
    unique = manifest.unique(subset="problem_id", keep="first", maintain_order=True).with_row_index("_row")
    counts = dict(unique.group_by(by).len().iter_rows())
    quotas = allocate_largest_remainder(counts, n)
    chosen: list[np.ndarray] = []
    for category, quota in sorted(quotas.items()):
        rows = unique.filter(pl.col(by) == category)["_row"].to_numpy()
        rng = np.random.default_rng(_category_seed(seed, category))
        chosen.append(rng.choice(rows, size=quota, replace=False))
    picked = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
    return unique.filter(pl.col("_row").is_in(picked.tolist())).drop("_row")


def category_table(frame: pl.DataFrame, by: str = "category") -> pl.DataFrame:
    """Per-category row counts and shares, largest first."""
    total = max(frame.height, 1)
    return (
        frame.group_by(by)
        .len("rows")
        .with_columns((pl.col("rows") / total).round(4).alias("share"))
        .sort(["rows", by], descending=[True, False])
    )
