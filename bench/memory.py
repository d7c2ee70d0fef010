#!/usr/bin/env python3
"""Memory of the whole process tree of a pre-fork server on real apps (issue 20).

What: the sum of /proc/PID/smaps_rollup Pss over the master and every
process descended from it (harness/memtree.py: children, adopted
grandchildren, and anything else still in the server's session), and per
process Pss/USS, role (master, worker, mold, other) and title (`ps`). Taken:

  start   the workers exist and the tree's Pss has settled, before any request
  warm    after --warmup varied requests (default 3,000)
  after   after --requests in all (default 50,000, the warm-up included),
          each phase bounded by --deadline seconds
  gc      (with --gc) after a full gc.collect() in every worker: the steady
          state of a server whose workers have not frozen the preloaded heap

Apps (bench/apps/): `django` (djangoapp: admin, auth, sessions, messages,
staticfiles, templates, i18n in 8 languages with its own catalogs compiled at
start by harness/msgfmt.py, a sqlite file migrated at start and read by one
view) and `fastapi` (fastapi_mem: pydantic models, Jinja2 pages, JSON). The
traffic is harness/mixes.py: admin login, pages, lists, 404s, static files,
one of 12 Accept-Language values per request; 4 keep-alive clients.

Servers (harness/memservers.py): ours with reforking (`--refork-after`) and
without, gunicorn --preload (sync, gthread; uvicorn's worker for ASGI),
uvicorn --workers, granian --workers. For every ours-with-reforking server a
second launch puts a keep-alive load (harness/reforkload.py) across the
refork: req/s and failed requests before, during and after it.

Output: one JSON line per (app, server) and per refork load (bench "memory",
"test" tree or refork-load) in --out or results/memory-<date>.jsonl (a
--smoke run only prints, unless --out), and markdown tables on stdout.

    PATH=$PWD/.venv/bin:$PATH python bench/memory.py --app django \\
        --server pg-supervise --server gunicorn-preload-sync --server gunicorn-preload-gthread
    python bench/memory.py --smoke --app fastapi
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from harness import load, memreport, memservers, memtree, mixes, msgfmt, provenance, reforkload, results
from harness.memservers import MEM_APPS, MEM_SERVERS
from harness.peers import APPS, launch_spec
from harness.procs import free_port
from harness.server import Server

SUMMARY_KEYS = (
    "total_pss_mib", "total_uss_mib", "total_rss_mib", "master_pss_mib", "master_uss_mib",
    "worker_pss_med_mib", "worker_uss_med_mib", "workers", "molds", "others", "processes",
)  # fmt: skip
SMOKE = {
    "warmup": 200, "requests": 600, "settle": 1.0, "settle_max": 10.0, "deadline": 15.0, "refork": "100",
    "refork_load_after": 300, "load_max": 12.0, "load_after": 2.0, "reps": 1,
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", action="append", choices=sorted(MEM_APPS), help="default: both")
    ap.add_argument("--server", action="append", choices=sorted(MEM_SERVERS), help="default: all for the app")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=3000, help="requests before the 'warm' reading")
    ap.add_argument("--requests", type=int, default=50000, help="requests in all before the 'after' reading")
    ap.add_argument("--clients", type=int, default=4, help="keep-alive client threads of the traffic")
    ap.add_argument("--per-conn", type=int, default=20, help="requests per connection before a new one")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds each traffic phase may take")
    ap.add_argument("--settle", type=float, default=3.0, help="least seconds before a reading")
    ap.add_argument("--settle-max", type=float, default=30.0, help="most seconds waiting for a steady tree")
    ap.add_argument("--gc", action="store_true", help="add a reading after a full GC in every worker")
    ap.add_argument(
        "--refork", default="100,1000", help="ours' --refork-after in the memory runs (the default)"
    )
    ap.add_argument("--no-refork-load", action="store_true", help="skip the load across a refork")
    ap.add_argument("--refork-load-after", type=int, help="its --refork-after (default: the app's)")
    ap.add_argument("--load-clients", type=int, default=8)
    ap.add_argument("--load-max", type=float, default=90.0, help="most seconds of the load across a refork")
    ap.add_argument("--load-after", type=float, default=10.0, help="seconds of load after the last change")
    ap.add_argument("--reps", type=int, default=1, help="trials per server (the order rotates)")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--out", help="append JSON lines here (default: results/memory-<date>.jsonl)")
    ap.add_argument("--md", help="also write the markdown tables here")
    ap.add_argument("--logdir", help="keep server logs here")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--smoke", action="store_true", help="a short run of ours and the baseline (< 1 min)")
    args = ap.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    args.requests = max(args.requests, args.warmup)
    return args


def say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def server_env() -> dict[str, str]:
    """The bench's own environment, with its interpreter's bin/ first on PATH when
    the servers live there (a venv): supervise, gunicorn, uvicorn, granian."""
    env = dict(os.environ)
    here = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(here, "supervise")):
        env["PATH"] = here + os.pathsep + env.get("PATH", "")
    return env


def context() -> dict[str, Any]:
    """Which code ran: supervisor/'s fingerprint and git state, the servers' versions."""
    versions = {}
    for dist in ("pg-supervise", "gunicorn", "uvicorn", "granian", "django", "fastapi", "pydantic"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    source = {
        "fingerprint": provenance.source_fingerprint(),
        "head": provenance.git("rev-parse", "--short", "HEAD"),
        "supervisor_changed": bool(provenance.git("status", "--porcelain", "--", "supervisor")),
    }
    return {"source": source, "versions": versions}


def prepare(apps: list[str], state: str, args: argparse.Namespace) -> None:
    """The Django app's compiled catalogs and migrated sqlite file, in ``state``."""
    if "django" not in apps:
        return
    mos = msgfmt.compile_tree(os.path.join(APPS, "djangoapp", "locale"), os.path.join(state, "locale"))
    script = (
        "import django; django.setup(); from django.core.management import call_command; "
        "call_command('migrate', interactive=False, verbosity=0); "
        "from django.contrib.auth.models import Group; "
        "[Group.objects.get_or_create(name=f'group {i}') for i in range(8)]"
    )
    env = dict(server_env(), MEMBENCH_STATE=state, PYTHONPATH=APPS)
    env["DJANGO_SETTINGS_MODULE"] = "djangoapp.settings"
    subprocess.run([sys.executable, "-c", script], cwd=APPS, env=env, check=True, timeout=180)
    say(args, f"django: {len(mos)} catalogs compiled, sqlite migrated in {state}")


def launch(server: str, app: str, refork: str, flag: bool, state: str, args: argparse.Namespace, tag: str):
    cmd = memservers.command(server, app, refork, flag)
    env = dict(MEM_APPS[app].env, MEMBENCH_STATE=state)
    port = free_port()
    argv, full = launch_spec(cmd, env, port=port, workers=args.workers)
    full["PATH"] = server_env()["PATH"]
    log = None
    if args.logdir:
        os.makedirs(args.logdir, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"memory-{app}-{server}-{tag}")
        log = os.path.join(args.logdir, name + ".log")
    srv = Server(argv, cwd=APPS, env=full, port=port, label=server, log_path=log)
    return srv.start(), cmd


def log_tail(srv: Server, n: int = 15) -> list[str]:
    return [text[:300] for _, _, text in list(srv.lines)[-n:]]


def reading(snap: dict[str, Any], info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"totals": memtree.totals(snap), "settle": info, "procs": snap["procs"], **extra}


def full_gc(srv: Server, workers: set[int], timeout: float = 20.0) -> dict[str, Any]:
    """GET /gc until every worker has answered (new connection each time)."""
    ld = load.Load(srv.port, threads=len(workers) + 1, path="/gc").start()
    try:
        t = ld.wait_pids(len(workers), timeout)
    finally:
        ld.stop()
    return {"all_answered": t is not None, "answered": len(ld.pids_seen())}


def tree_trial(srv: Server, app: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    n, mix, phases = args.workers, mixes.MIXES[MEM_APPS[app].mix], {}

    def alive() -> bool:
        return srv.exit_t is None

    snap, info = memtree.settle(srv.pid, n, min_s=args.settle, max_s=args.settle_max, alive=alive)
    if not alive() or info["workers"] < n:
        why = f"{info['workers']} of {n} workers (exit code {srv.returncode})"
        return {"error": why, "log": log_tail(srv)}
    phases["start"] = reading(snap, info)
    served: set[int] = set()
    steps = [("warm", args.warmup), ("after", args.requests - args.warmup)]
    for i, (name, count) in enumerate(steps):
        traffic = mixes.run_mix(
            srv.port, mix, count, args.clients, args.deadline, seed + i, per_conn=args.per_conn
        )
        served |= {int(p) for p in traffic["pids"]}
        time.sleep(0.5)
        snap, info = memtree.settle(srv.pid, n, served, min_s=1.0, max_s=args.settle_max, alive=alive)
        phases[name] = reading(snap, info, traffic=traffic)
        pss, bad = memtree.totals(snap)["total_pss_mib"], sum(traffic["errors"].values())
        spread = sorted(traffic["pids"].values())
        say(args, f"  {name}: {pss:.1f} MiB after {traffic['sent']} requests in {traffic['elapsed_s']} s "
                  f"({traffic['status']}, {bad} errors; per worker {spread})")  # fmt: skip
        if not alive():
            return {"phases": phases, "error": f"the master exited ({srv.returncode})", "log": log_tail(srv)}
    if args.gc:
        gc_run = full_gc(srv, memtree.workers_of(snap))
        snap, info = memtree.settle(srv.pid, n, served, min_s=1.0, max_s=args.settle_max, alive=alive)
        phases["gc"] = reading(snap, info, gc=gc_run)
    return {"phases": phases}


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for p in memreport.PHASES:
        for k in SUMMARY_KEYS:
            vals = [t["phases"][p]["totals"].get(k) for t in trials if p in t.get("phases", {})]
            if vals:
                out[f"{p}.{k}"] = results.summary(vals)
    return out


def run_trees(app: str, servers: list[str], flag: bool, state: str, args: argparse.Namespace) -> list[dict]:
    trials: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    cmds: dict[str, str] = {}
    for rep in range(args.reps):
        k = rep % len(servers)
        for server in servers[k:] + servers[:k]:
            say(args, f"{app} {server} (trial {rep + 1}/{args.reps})")
            srv, cmds[server] = launch(server, app, args.refork, flag, state, args, f"tree{rep}")
            try:
                trial = tree_trial(srv, app, args, args.seed + 10 * rep)
            finally:
                trial_stop = srv.stop(signal.SIGTERM, timeout=30)
            trial["stop_s"] = trial_stop
            if "error" in trial:
                say(args, f"  {server}: {trial['error']}")
            trials[server].append(trial)
            time.sleep(0.5)
    recs = []
    for server in servers:
        ok = [t for t in trials[server] if "error" not in t]
        recs.append(
            results.record(
                "memory",
                server,
                test="tree",
                app=app,
                baseline=MEM_APPS[app].baseline,
                workers=args.workers,
                warmup=args.warmup,
                requests=args.requests,
                cmd=cmds.get(server),
                refork_flag=flag,
                refork=args.refork if MEM_SERVERS[server].refork else None,
                smoke=args.smoke,
                trials=trials[server],
                summary=summarise(ok),
            )
        )
    return recs


def run_refork_load(app: str, server: str, state: str, args: argparse.Namespace) -> dict[str, Any]:
    refork = str(args.refork_load_after or MEM_APPS[app].load_refork)
    say(args, f"{app} {server}: keep-alive load across a refork (--refork-after {refork})")
    srv, cmd = launch(server, app, refork, True, state, args, "refork-load")
    extra: dict[str, Any] = {}
    try:
        _, t_ready, _ = load.probe_ready(srv.port, args.workers, timeout=args.settle_max)
        if t_ready is None:
            run = None
            extra = {"error": "workers never became ready", "log": log_tail(srv)}
        else:
            run = reforkload.run(
                srv.pid, srv.port, MEM_APPS[app].load_path, args.load_clients, args.load_max, args.load_after
            )
            extra["tree_after"] = memtree.totals(memtree.snapshot(srv.pid))
            said = [t[:300] for _, _, t in list(srv.lines) if re.search("refork|mold", t, re.I)]
            extra["log_lines"] = said[:40]
    finally:
        srv.stop(signal.SIGTERM, timeout=30)
    if run:
        say(args, f"  refork seen: {run['refork_seen']}; failed {run['total']['failed']} of "
                  f"{run['total']['ok'] + run['total']['failed']}")  # fmt: skip
    return results.record(
        "memory", server, test="refork-load", app=app, workers=args.workers, cmd=cmd, refork=refork,
        smoke=args.smoke, run=run, **extra,
    )  # fmt: skip


def main() -> None:
    args = parse_args()
    apps = args.app or sorted(MEM_APPS)
    flag = memservers.refork_supported(server_env())
    if not flag:
        say(args, "supervise has no --refork-after: ours runs without it, the refork servers are skipped")
    ctx = context()  # supervisor/ is installed editable: note if it changes during the run
    state = tempfile.mkdtemp(prefix="membench-")
    recs: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        prepare(apps, state, args)
        for app in apps:
            wanted = args.server or memservers.servers_for(app, args.smoke)
            servers = []
            for s in wanted:
                why = memservers.unavailable(s, app, flag)
                if why:
                    skipped.append(f"{app} {s}: {why}")
                else:
                    servers.append(s)
            if servers:
                recs += run_trees(app, servers, flag, state, args)
            if not args.no_refork_load:
                for s in servers:
                    if MEM_SERVERS[s].refork:
                        recs.append(run_refork_load(app, s, state, args))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    changed = context()["source"]["fingerprint"] != ctx["source"]["fingerprint"]
    if changed:
        say(args, "warning: supervisor/ changed during the run (the records say so)")
    out = args.out or (None if args.smoke else results.default_path("memory"))
    for rec in recs:
        rec.update(ctx, source_changed_during_run=changed)
        if out:
            results.append(out, rec)
    md = "\n".join(x for x in (memreport.tree(recs), memreport.processes(recs), memreport.refork(recs)) if x)
    if skipped:
        md += "\nnot run: " + "; ".join(skipped) + "\n"
    for rec in recs:
        for t in rec.get("trials", [rec]):
            if t.get("error"):
                md += f"\n{rec.get('app')} {rec['label']}: {t['error']}\n"
                md += "\n".join(t.get("log", [])) + "\n"
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    if out:
        say(args, f"records appended to {out}")


if __name__ == "__main__":
    main()
