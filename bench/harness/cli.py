"""The command line every HTTP bench shares, and how it resolves to a launch."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from harness import load, results
from harness.peers import APPS, PEERS, launch_spec
from harness.procs import free_port
from harness.server import Server


@dataclass
class Launch:
    """One configuration to run: a command template and its environment."""

    label: str
    cmd: str
    env: dict[str, str] = field(default_factory=dict)
    clean: str | None = None
    reload_signal: str = "SIGHUP"
    term_signal: str = "SIGTERM"

    def server(self, workers: int, log_path: str | None = None) -> Server:
        port = free_port()
        argv, env = launch_spec(self.cmd, self.env, port=port, workers=workers)
        return Server(
            argv, cwd=APPS, env=env, port=port, label=self.label, log_path=log_path, clean=self.clean
        )

    def serve_ready(
        self, workers: int, log_path: str | None = None, timeout: float = 60.0
    ) -> tuple[Server, set[int]]:
        """A started server whose ``workers`` workers all answer, and their pids;
        exits the bench (after stopping it) if they never do."""
        srv = self.server(workers, log_path).start()
        _, t_ready, pids = load.probe_ready(srv.port, workers, timeout=timeout)
        if t_ready is None:
            srv.stop()
            raise SystemExit(f"{self.label}: workers never became ready")
        return srv, pids


def base_args(desc: str | None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", choices=sorted(PEERS), help="an entry of the launch table (harness/peers.py)")
    ap.add_argument("--cmd", help="a launch command template instead ({port} {workers} {host} {apps} {db})")
    ap.add_argument("--clean", help="shell command run before and after every trial")
    ap.add_argument("--label", help="name for this configuration in the results")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra env for the server")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", help="append JSON lines here (default: results/<bench>-<date>.jsonl)")
    ap.add_argument("--logdir", help="keep server logs here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="a 1-2 s run that proves the bench works")
    return ap


def resolve(args: argparse.Namespace) -> Launch:
    """The launch for ``--peer`` and/or ``--cmd``, with ``--env`` on top."""
    if args.peer:
        peer = PEERS[args.peer]
        if not peer.available():
            sys.exit(f"peer {args.peer!r} needs {peer.needs!r}, which is not installed")
        launch = Launch(args.peer, peer.cmd, dict(peer.env), None, peer.reload_signal, peer.term_signal)
    elif args.cmd:
        launch = Launch(args.cmd, args.cmd)
    else:
        sys.exit("need --cmd or --peer")
    if args.cmd:
        launch.cmd = args.cmd
    launch.clean = args.clean
    for kv in args.env:
        k, _, v = kv.partition("=")
        launch.env[k] = v
    launch.label = args.label or launch.label
    return launch


def sig(name: str) -> signal.Signals:
    return signal.Signals[name if name.startswith("SIG") else "SIG" + name]


def emit(args: argparse.Namespace, fields: dict[str, Any]) -> None:
    """Write one record: ``fields`` with ``bench`` and ``label`` in the common
    envelope (a smoke run only prints it, unless ``--out`` is given)."""
    rest = dict(fields)
    rec = results.record(rest.pop("bench"), rest.pop("label"), **rest)
    out = args.out or (None if args.smoke else results.default_path(rec["bench"]))
    if out:
        results.append(out, rec)
    if not args.quiet:
        line = json.dumps(rec)
        print(line if len(line) < 4000 else line[:4000] + "...", flush=True)


def logpath(args: argparse.Namespace, launch: Launch, tag: str) -> str | None:
    if not args.logdir:
        return None
    os.makedirs(args.logdir, exist_ok=True)
    return os.path.join(args.logdir, re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{launch.label}-{tag}") + ".log")


def parse(ap: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    """Parse; with ``--smoke``, one trial and the short settings in ``smoke``."""
    args = ap.parse_args()
    if args.smoke:
        args.reps = 1
        for k, v in smoke.items():
            setattr(args, k, v)
    return args
