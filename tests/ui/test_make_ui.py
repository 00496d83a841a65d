"""`make ui` serves on 127.0.0.1 unless told otherwise, and stops, every process of it, on SIGTERM and Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.ui

# Measured: 9 s after SIGTERM, 17 s after Ctrl-C on 2 shared cores, the code server's exit included.
STOP_BOUND_S = 60


def session_processes(session: int) -> list[psutil.Process]:
    """The live processes of ``session`` (zombies are dead and are left out)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def listening_addresses(port: int) -> set[str]:
    return {
        connection.laddr.ip
        for connection in psutil.net_connections("tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    }


def describe(processes: list[psutil.Process]) -> str:
    return "\n".join(" ".join(process.cmdline())[:200] for process in processes)


@pytest.mark.parametrize("stop", ["kill", "ctrl-c"])
def test_make_ui_serves_on_loopback_and_stops_on_signal(
    ui_project: Path, start_make_ui, port: int, stop: str
):
    # `make ui &` in a script, stopped with `kill $!`; or `make ui` in a terminal, stopped with Ctrl-C.
    started = start_make_ui(ui_project, port, background_job=stop == "kill")
    session = started.pid
    processes = session_processes(session)
    commands = describe(processes)
    for part in ("make -o install ui", "dagster dev", "dagster_webserver", "dagster._daemon", "code-server"):
        assert part in commands, f"no `{part}` among the processes of make ui:\n{commands}"
    assert listening_addresses(port) == {"127.0.0.1"}

    stopped_at = time.monotonic()
    if stop == "kill":
        (make,) = psutil.Process(started.pid).children()
        assert make.name() == "make"
        make.send_signal(signal.SIGTERM)
    else:
        # The terminal sends SIGINT to its foreground process group: here, the session's one group.
        os.killpg(session, signal.SIGINT)
    while left := session_processes(session):
        assert time.monotonic() - stopped_at < STOP_BOUND_S, (
            f"still running {STOP_BOUND_S} s after {stop}:\n{describe(left)}"
        )
        time.sleep(0.5)
    assert listening_addresses(port) == set()
