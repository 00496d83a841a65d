"""The browser tier's fixtures: `make ui` on a copy of the project, and a chromium page driven by Playwright."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests_support import REPO_ROOT, clone_project, small_tiny_params

# `dagster dev` serves in 30 to 60 s on 2 shared cores (it loads the code location twice).
SERVE_TIMEOUT_S = 240
UI_VIEWPORT = {"width": 1600, "height": 900}


@pytest.fixture()
def ui_project(tmp_path: Path) -> Path:
    """A fresh copy of the project (the small tiny profile) with its own empty DAGSTER_HOME: what the UI
    materializes lands there, never in this checkout."""
    project = clone_project(tmp_path / "project", small_tiny_params())
    (project / ".dagster_home").mkdir()
    shutil.copy(REPO_ROOT / "configs/dagster.yaml", project / ".dagster_home/dagster.yaml")
    return project


@pytest.fixture()
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def make_ui_command(port: int) -> list[str]:
    """`make ui` on ``port``, with this interpreter's environment as the project's venv (installed already)."""
    return ["make", "-o", "install", "ui", f"VENV={sys.prefix}", f"UI_PORT={port}"]


@pytest.fixture()
def start_make_ui(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `make ui` in ``project`` and returns once it serves; its process group is stopped afterwards.

    ``background_job=True`` starts it as a script's ``make ui &`` does: the shell starts a background job with
    SIGINT ignored (then the returned process is that shell, and make is its child)."""
    started: list[subprocess.Popen] = []

    def start(project: Path, port: int, *, background_job: bool = False) -> subprocess.Popen:
        command = make_ui_command(port)
        if background_job:
            command = ["bash", "-c", f"{shlex.join(command)} & wait"]
        log_path = tmp_path / f"make-ui-{port}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command,
                cwd=project,
                env={
                    **os.environ,
                    "MARC_PROJECT_DIR": str(project),
                    "DAGSTER_HOME": str(project / ".dagster_home"),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not serves(f"http://127.0.0.1:{port}"):
            assert process.poll() is None, f"make ui exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"make ui did not serve within {SERVE_TIMEOUT_S} s"
            time.sleep(1)
        return process

    yield start
    for process in started:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM to ``process``'s group (its leader may be gone, the rest not), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and group_alive(process):
            time.sleep(0.5)
    process.wait()


def group_alive(leader: subprocess.Popen) -> bool:
    leader.poll()  # reaps the leader once it has exited: a zombie still counts as a member of the group
    try:
        os.killpg(leader.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture()
def page():
    """A chromium page (Debian's `chromium`; Playwright's own browser builds are downloads) that skips
    Dagster's first-visit newsletter dialog whenever it shows."""
    # The `ui` extra: imported here so that the default tiers collect without it.
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "no chromium on PATH: `make test-ui` installs Debian's"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport=UI_VIEWPORT)
        page.set_default_timeout(60_000)
        newsletter = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
        page.add_locator_handler(newsletter, lambda dialog: dialog.get_by_role("button", name="Skip").click())
        yield page
        browser.close()
