"""What `make ui` runs: host and port from UI_HOST and UI_PORT (127.0.0.1:3000 by default), with SIGINT's
default restored so that `kill` stops it when it was started in the background. The ui tier (tests/ui) starts
it and stops it."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from tests_support import REPO_ROOT


def make_ui_dry_run(*variables: str) -> list[str]:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "install", "ui", *variables],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    (line,) = done.stdout.splitlines()
    return shlex.split(line)


@pytest.mark.parametrize(
    ("variables", "host", "port"),
    [((), "127.0.0.1", "3000"), (("UI_HOST=0.0.0.0", "UI_PORT=8080"), "0.0.0.0", "8080")],
)
def test_make_ui_serves_on_ui_host_and_ui_port(variables: tuple[str, ...], host: str, port: str):
    command = make_ui_dry_run(*variables)
    assert command[:2] == ["env", "--default-signal=INT"]
    assert command[2].endswith("/dagster") and command[3] == "dev"
    assert command[command.index("-h") + 1] == host
    assert command[command.index("-p") + 1] == port
    assert command[-2:] == ["-m", "pipelines.definitions"]
