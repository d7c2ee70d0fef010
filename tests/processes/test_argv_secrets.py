"""A password given on the command line leaves `ps` at once, and never appears
in the command line of a process we start (the --preload re-exec and its check)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import Run, free_port, session_pids, wait_until

SECRET = "s3cretHunter2"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def time_until_hidden(run: Run, started: float) -> float:
    """Seconds from the spawn until the master's command line lost the password."""

    def hidden() -> float | None:
        line = cmdline(run.pid)
        return time.monotonic() - started if line and SECRET not in line else None

    took: float = wait_until(hidden, 15, "the password to leave the command line")
    return took


def test_migrate_hides_the_password_for_its_whole_run(supervise, tmp_path: Path):
    (tmp_path / "mig").mkdir()
    url = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/x"  # refused: it waits
    started = time.monotonic()
    run = supervise(
        "migrate", "--migrations", str(tmp_path / "mig"), "--db-wait-timeout", "60", "--database-url", url
    )
    took = time_until_hidden(run, started)
    print(f"password visible for at most {took * 1000:.0f} ms after the spawn")  # the report's figure
    run.wait_event("waiting for PostgreSQL", count=2)
    line = cmdline(run.pid)
    # rewritten in place (no setproctitle on this path): the rest is as typed
    assert f"--database-url postgresql://app:{'*' * len(SECRET)}@127.0.0.1:" in line
    assert SECRET not in run.output()
    run.signal(signal.SIGTERM)
    run.wait()


def test_check_hides_the_password_while_it_imports(supervise, tmp_path: Path):
    (tmp_path / "slowimport.py").write_text("import time\ntime.sleep(3)\n\n\ndef main(worker):\n    pass\n")
    url = f"host=127.0.0.1 port=5432 password={SECRET} dbname=x"
    run = supervise("check", "slowimport:main", "--database-url", url)
    time_until_hidden(run, time.monotonic())
    seen = []
    while run.proc.poll() is None:  # until it is done: it must stay hidden
        seen.append(cmdline(run.pid))
        time.sleep(0.01)
    assert run.wait() == 0, run.output()
    assert not [line for line in seen if SECRET in line]
    assert any("password=" + "*" * len(SECRET) in line for line in seen)


class Watch:
    """Reads the command line of every process of a session until stopped."""

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.seen: dict[int, set[str]] = {}
        self.leaks: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in session_pids(self.sid):
                line = cmdline(pid)
                if line:
                    self.seen.setdefault(pid, set()).add(line)
                if SECRET in line:
                    self.leaks.append((pid, line))
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_no_process_we_start_shows_the_password(supervise, postgres_url):
    url = make_conninfo(**{**conninfo_to_dict(postgres_url), "password": SECRET})  # trust: ignored
    run = supervise("mains:wait", "-w", "2", "--preload", "--database-url", url)
    time_until_hidden(run, time.monotonic())
    run.wait_ready(2)
    watch = Watch(run.pid)
    try:
        run.signal(signal.SIGHUP)  # --preload: a `check` subprocess, then a re-exec
        run.wait_event("re-executed with new code", timeout=30)
        run.wait_event("worker ready", count=4, timeout=30)
        run.signal(signal.SIGHUP)  # and again, from the re-executed image
        run.wait_event("re-executed with new code", count=2, timeout=30)
        run.wait_event("worker ready", count=6, timeout=30)
    finally:
        watch.stop()
    assert not watch.leaks, watch.leaks
    checks = [pid for pid, lines in watch.seen.items() if any(" check mains:wait" in line for line in lines)]
    assert len(checks) == 2, watch.seen  # the watch did see the processes it vouches for
    assert SECRET not in run.output()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
