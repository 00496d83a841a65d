"""Checks of the data assets: the manifest's schema and quarantine share, the subset's category shares."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from marc_ops.checks.outcome import CheckOutcome, plural
from marc_ops.config import Params, ProjectPaths
from marc_ops.data.schema import MANIFEST_SCHEMA, QUARANTINE_SCHEMA

# Above this share of quarantined annotation rows the data root is likely incomplete (a media folder
# missing, a truncated file) rather than holding a few bad rows: the check warns, the run goes on.
MAX_QUARANTINE_SHARE = 0.05


def _schema_problems(
    file: str, found: Mapping[str, pl.DataType], expected: Mapping[str, pl.DataType]
) -> list[dict[str, str]]:
    problems = []
    for column, dtype in expected.items():
        if column not in found:
            problems.append({"file": file, "column": column, "expected": str(dtype), "found": "missing"})
        elif found[column] != dtype:
            problems.append(
                {"file": file, "column": column, "expected": str(dtype), "found": str(found[column])}
            )
    return problems


def manifest_schema(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """``manifest.parquet`` and ``quarantine.parquet`` hold every column of their schema with its type
    (``MANIFEST_SCHEMA``, ``QUARANTINE_SCHEMA``: what the subset, VMR and training stages read)."""
    folder = paths.asset("videor1_manifest")
    problems = []
    for file, expected in (("manifest.parquet", MANIFEST_SCHEMA), ("quarantine.parquet", QUARANTINE_SCHEMA)):
        problems += _schema_problems(file, pl.read_parquet_schema(folder / file), expected)
    rows = pl.scan_parquet(folder / "manifest.parquet").select(pl.len()).collect().item()
    facts = {"rows": rows, "columns_checked": len(MANIFEST_SCHEMA) + len(QUARANTINE_SCHEMA)}
    if not problems:
        return CheckOutcome(True, f"{plural(rows, 'row')}; every required column has its type", facts)
    return CheckOutcome(
        False,
        f"{plural(len(problems), 'column')} missing or of another type: "
        + ", ".join(f"{p['file']}:{p['column']}" for p in problems),
        {**facts, "schema_problems": len(problems)},
        pl.DataFrame(problems),
    )


def quarantine_share(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """At most :data:`MAX_QUARANTINE_SHARE` of the annotation rows were quarantined."""
    folder = paths.asset("videor1_manifest")
    rows = pl.scan_parquet(folder / "manifest.parquet").select(pl.len()).collect().item()
    quarantine = pl.read_parquet(folder / "quarantine.parquet")
    total = rows + quarantine.height
    share = quarantine.height / total if total else 0.0
    reasons = (
        quarantine.group_by("reason_code").len("rows").sort(["rows", "reason_code"], descending=[True, False])
    )
    facts = {
        "rows": rows,
        "quarantined": quarantine.height,
        "share": round(share, 4),
        "threshold": MAX_QUARANTINE_SHARE,
    }
    passed = share <= MAX_QUARANTINE_SHARE
    return CheckOutcome(
        passed,
        f"{quarantine.height} of {total} annotation rows quarantined ({share:.1%}; "
        f"{'within' if passed else 'above'} the {MAX_QUARANTINE_SHARE:.0%} expected at most)",
        facts,
        reasons if quarantine.height else None,
    )


def train_subset_proportions(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """The subset holds ``data.train_size`` rows and each category the floor or ceil of its proportional
    target (its manifest share × the subset's size): within one row of it."""
    manifest = pl.read_parquet(paths.asset("videor1_manifest") / "manifest.parquet")
    subset = pl.read_parquet(paths.asset("train_subset") / "train_subset.parquet")
    # The sampler counts a repeated problem_id once (marc_ops.data.sampling.stratified_sample).
    unique = manifest.unique(subset="problem_id", keep="first")
    table = (
        unique.group_by("category")
        .len("manifest_rows")
        .join(subset.group_by("category").len("subset_rows"), on="category", how="full", coalesce=True)
        .fill_null(0)
        .with_columns(target=pl.col("manifest_rows") * subset.height / max(unique.height, 1))
        .with_columns(deviation=pl.col("subset_rows") - pl.col("target"))
        .sort("category")
    )
    off = table.filter(pl.col("deviation").abs() >= 1)
    facts = {
        "rows": subset.height,
        "train_size": params.data.train_size,
        "categories": table.height,
        "max_deviation_rows": round(float(table["deviation"].abs().max() or 0.0), 3),
    }
    wrong_size = subset.height != params.data.train_size
    if off.is_empty() and not wrong_size:
        return CheckOutcome(
            True, f"{plural(table.height, 'category')}, each within one row of its share", facts, table
        )
    parts = [f"{subset.height} rows, not data.train_size {params.data.train_size}"] if wrong_size else []
    parts += [
        f"{row['category']} has {row['subset_rows']} rows for {row['target']:.2f}"
        for row in off.iter_rows(named=True)
    ]
    return CheckOutcome(False, "; ".join(parts), facts, table)
