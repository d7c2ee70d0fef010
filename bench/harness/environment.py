"""What a ``supervisor_bench.py`` run sets up and checks around its trials: a
frozen copy of supervisor/ (so that edits during the run do not mix versions),
the servers' versions, one preflight launch of each server, and a ps-level
check for processes left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from harness.lifecycle_trial import SERVERS, build_command, server_env
from harness.peers import APPS
from harness.provenance import ROOT
from harness.server import Server


def leftover_check(master_pids):
    """ps-level check that nothing we started survives."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    left = []
    sids = set(master_pids)
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        pid, sid, cmd = int(parts[0]), int(parts[1]), parts[2]
        if pid == os.getpid():
            continue
        if sid in sids or "bench_target" in cmd or "bench_gunicorn_conf" in cmd:
            left.append(line.strip())
    return left


def versions(args):
    bindir = os.path.join(args.venv, "bin")
    out = {}
    for name, argv in (
        ("pg-supervise", [os.path.join(bindir, "supervise"), "--version"]),
        ("gunicorn", [os.path.join(bindir, "gunicorn"), "--version"]),
    ):
        try:
            out[name] = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, cwd=APPS, env=server_env(args, name)
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            out[name] = f"? ({exc})"
    return out


def freeze_source(args, ctl_dir):
    """Copy supervisor/ so that edits during the run do not mix versions."""
    args.src_dir = None
    if args.source == "live":
        return None
    src_root = os.path.join(ctl_dir, "src")
    os.makedirs(src_root, exist_ok=True)
    if args.source == "worktree":
        shutil.copytree(
            os.path.join(ROOT, "supervisor"),
            os.path.join(src_root, "supervisor"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    else:
        arch = subprocess.run(
            ["git", "-C", ROOT, "archive", "HEAD", "supervisor"], capture_output=True, timeout=60, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", src_root], input=arch, check=True, timeout=60)
    args.src_dir = os.path.join(src_root, "supervisor")
    probe = subprocess.run(
        [os.path.join(args.venv, "bin", "python"), "-c", "import supervisor; print(supervisor.__file__)"],
        env=server_env(args),
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = probe.stdout.strip()
    if not where.startswith(args.src_dir):
        sys.exit(
            f"supervisor_bench: the frozen copy is not the one imported ({where!r}, "
            f"{probe.stderr.strip()[-300:]!r}); try --source live"
        )
    return where


def preflight(args, ctl_dir):
    """One N=1 launch of each server: fail fast, with its log, if it cannot start."""
    for kind in SERVERS:
        argv = build_command(args, kind, 1, False, ctl_dir)
        srv = Server(argv, cwd=APPS, env=server_env(args, kind), label=f"preflight {kind}")
        try:
            srv.start()
            ok = srv.wait_ready(1, args.startup_timeout + args.import_delay) is not None
            if ok:
                os.kill(srv.pid, signal.SIGTERM)
                srv.wait_exit(args.stop_timeout)
        finally:
            srv.cleanup()
        if not ok:
            log = "\n".join(f"  {t:8.4f} {text[:400]}" for t, _, text in srv.lines[-30:])
            sys.exit(
                f"supervisor_bench: preflight: {kind} did not get one worker ready "
                f"(exit code {srv.returncode}).\n$ {' '.join(argv)}\n{log}"
            )
