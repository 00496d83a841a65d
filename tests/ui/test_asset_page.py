"""The Dagster UI as a person uses it: the asset graph, Materialize on an asset's page, the run, the checks.

Runs `make ui` on a fresh copy of the project and drives it through chromium. Screenshots go to the test's
temporary folder; with UPDATE_SNAPSHOTS=1 the asset graph's and the Checks tab's also replace the pictures of
docs/dagster.md (docs/img/).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from tests_support import REPO_ROOT

pytestmark = pytest.mark.ui

# A run of one data asset takes 1 to 2 min on 2 shared cores: the run worker and each step (the asset, then its
# checks) are processes that load the code location.
RUN_TIMEOUT_MS = 600_000
RUN_OUTCOME = re.compile(r"^(Success|Failure|Canceled)$")
DOCS_SCREENSHOTS = {  # screenshot of the test: its picture in the docs
    "asset-graph-after.png": REPO_ROOT / "docs/img/dagster-asset-graph.png",
    "checks-videor1_manifest.png": REPO_ROOT / "docs/img/dagster-asset-checks.png",
}


def materialize_from_asset_page(page, url: str, asset: str, shots: Path) -> None:
    """Open ``asset``'s page, click Materialize, follow the launched run to its end; the run must succeed."""
    page.goto(f"{url}/assets/{asset}")
    page.get_by_text("Never materialized").first.wait_for()
    page.get_by_role("button", name=re.compile(r"Materialize$")).click()
    page.get_by_text("Launched run").wait_for()
    page.get_by_role("link", name="View", exact=True).click()  # the toast's link to the run
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]+$"))
    outcome = page.get_by_text(RUN_OUTCOME).first
    outcome.wait_for(timeout=RUN_TIMEOUT_MS)
    page.screenshot(path=shots / f"run-{asset}.png")
    assert outcome.inner_text() == "Success", f"the run of {asset} ended in {outcome.inner_text()}"


@pytest.mark.timeout(1800)
def test_materialize_an_asset_from_its_page_and_read_its_checks(ui_project: Path, start_make_ui, port, page):
    start_make_ui(ui_project, port)
    url = f"http://127.0.0.1:{port}"
    shots = ui_project.parent / "screenshots"
    shots.mkdir()

    # The asset graph: every group of the code location, and the data group's three assets once filtered.
    page.goto(f"{url}/asset-groups")
    for group in ("data", "vmr", "train", "evaluation", "score", "model"):
        page.get_by_role("button", name=re.compile(rf"\b{group}$")).wait_for()
    page.get_by_role("textbox", name="Search and filter assets").focus()  # a CodeMirror editor's textarea
    page.keyboard.type("group:data")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/asset-groups~group%3Adata/?$"))
    for asset in ("videor1_source", "videor1_manifest", "train_subset"):
        page.get_by_text(asset, exact=True).last.wait_for()
    page.screenshot(path=shots / "asset-graph-before.png")

    # The manifest reads the source files: materialize the source first, as its page's lineage says.
    materialize_from_asset_page(page, url, "videor1_source", shots)
    materialize_from_asset_page(page, url, "videor1_manifest", shots)
    assert pl.read_parquet(ui_project / "assets/videor1_manifest/manifest.parquet").height > 0

    # The asset's Checks tab: both checks ran after the materialization and passed, with their findings.
    page.goto(f"{url}/assets/videor1_manifest")
    page.get_by_role("tab", name="Checks").click()
    checks = page.get_by_text("Succeeded", exact=True)
    checks.nth(1).wait_for()
    assert checks.count() == 2
    for check in ("schema", "quarantine_share"):
        page.get_by_text(check, exact=True).first.wait_for()
    page.get_by_text(re.compile(r"^0 of \d+ annotation rows quarantined")).wait_for()
    page.get_by_text("Passed", exact=True).wait_for()
    page.screenshot(path=shots / "checks-videor1_manifest.png")

    # Back on the graph the two assets show as materialized, the manifest's checks as passed.
    page.goto(f"{url}/asset-groups~group%3Adata/")
    page.get_by_text("2 / 2 Passed").wait_for()
    assert page.get_by_text("Materialized", exact=True).count() == 2
    page.screenshot(path=shots / "asset-graph-after.png")
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        for shot, picture in DOCS_SCREENSHOTS.items():
            picture.parent.mkdir(exist_ok=True)
            shutil.copy(shots / shot, picture)
