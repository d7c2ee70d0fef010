"""The memory bench's launch table: its two apps and the servers that run them.

Commands are templates as in harness/peers.py (``{port}``, ``{workers}``,
``{apps}`` ... filled by ``peers.launch_spec``), plus ``{target}`` and
``{iface}`` from the app and ``{refork}``: ours' ``--refork-after`` value
(a comma-separated list of request counts, or ``off``). A ``refork`` entry
needs that option; when the installed ``supervise`` does not have it yet, the
entries with ``refork=True`` are skipped and the ``off`` ones run without it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from harness.peers import APPS


@dataclass(frozen=True)
class MemApp:
    target: str
    kind: str  # "wsgi" or "asgi"
    mix: str  # harness.mixes.MIXES key
    baseline: str  # the server of the ratio column
    load_path: str  # the keep-alive load across a refork
    load_refork: int  # its --refork-after: about 10 s of load before the refork on 2 cores
    env: dict[str, str] = field(default_factory=dict)
    needs_module: str = ""


MEM_APPS: dict[str, MemApp] = {
    "django": MemApp(
        "djangoapp.wsgi:application",
        "wsgi",
        "django",
        baseline="gunicorn-preload-sync",
        load_path="/",
        load_refork=4000,
        env={"DJANGO_SETTINGS_MODULE": "djangoapp.settings"},
        needs_module="django",
    ),
    # gunicorn sync cannot serve ASGI: its baseline is gunicorn --preload with uvicorn's worker
    "fastapi": MemApp(
        "fastapi_mem:app",
        "asgi",
        "fastapi",
        baseline="gunicorn-preload-uvicorn",
        load_path="/",
        load_refork=12000,
        needs_module="fastapi",
    ),
}


@dataclass(frozen=True)
class MemServer:
    cmd: str
    kinds: tuple[str, ...]
    # True: needs --refork-after; False: ours with it off; None: a peer, or ours on its defaults
    refork: bool | None = None
    needs: str = ""  # an executable
    needs_module: str = ""


_OURS = "supervise {target} -w {workers} --bind 127.0.0.1:{port} --log-level warning --preload"
_GUNICORN = "gunicorn --preload -w {workers} -b 127.0.0.1:{port}"
MEM_SERVERS: dict[str, MemServer] = {
    # what a user gets from --preload alone: 4 threads (WSGI), reforking on its default schedule
    "pg-supervise-defaults": MemServer(_OURS, ("wsgi", "asgi")),
    "pg-supervise-refork": MemServer(_OURS + "{threads1} --refork-after {refork}", ("wsgi", "asgi"), True),
    "pg-supervise": MemServer(_OURS + "{threads1} --refork-after off", ("wsgi", "asgi"), False),
    # the master does not import the app: the first workers do, the mold's children share it
    "pg-supervise-lazy-refork": MemServer(
        _OURS.removesuffix(" --preload") + "{threads1} --refork-after {refork}", ("wsgi", "asgi"), True
    ),
    "pg-supervise-t4-refork": MemServer(_OURS + " --threads 4 --refork-after {refork}", ("wsgi",), True),
    "pg-supervise-t4": MemServer(_OURS + " --threads 4 --refork-after off", ("wsgi",), False),
    "gunicorn-preload-sync": MemServer(_GUNICORN + " {target}", ("wsgi",), needs="gunicorn"),
    "gunicorn-preload-gthread": MemServer(
        _GUNICORN + " -k gthread --threads 4 {target}", ("wsgi",), needs="gunicorn"
    ),
    "gunicorn-preload-uvicorn": MemServer(
        _GUNICORN + " -k uvicorn_worker.UvicornWorker {target}",
        ("asgi",),
        needs="gunicorn",
        needs_module="uvicorn_worker",
    ),
    "uvicorn": MemServer(
        "uvicorn --workers {workers} --host 127.0.0.1 --port {port} --no-access-log {target}",
        ("asgi",),
        needs="uvicorn",
    ),
    "granian": MemServer(
        "granian --interface {iface} --workers {workers} --host 127.0.0.1 --port {port} {target}",
        ("wsgi", "asgi"),
        needs="granian",
    ),
}
SMOKE_SERVERS = ("pg-supervise", "pg-supervise-refork", "gunicorn-preload-sync", "gunicorn-preload-uvicorn")


def refork_supported(env: dict[str, str] | None = None) -> bool:
    """Whether the ``supervise`` on PATH has ``--refork-after``."""
    exe = shutil.which("supervise", path=(env or os.environ).get("PATH"))
    if not exe:
        return False
    try:
        out = subprocess.run(
            [exe, "run", "--help"], capture_output=True, text=True, timeout=60, cwd=APPS, env=env
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--refork-after" in out


def command(server: str, app: str, refork: str, with_refork_flag: bool) -> str:
    """The launch template of ``server`` on ``app``; without ``with_refork_flag``
    the ``--refork-after`` option is left out (ours before the option existed)."""
    a, s = MEM_APPS[app], MEM_SERVERS[server]
    cmd = (
        s.cmd.replace("{threads1}", " --threads 1" if a.kind == "wsgi" else "")
        .replace("{target}", a.target)
        .replace("{iface}", a.kind)
        .replace("{refork}", refork)
    )
    if not with_refork_flag:
        cmd = cmd.replace(" --refork-after off", "")
    return cmd


def unavailable(server: str, app: str, refork_flag: bool) -> str | None:
    """Why ``server`` cannot run ``app`` here, or None."""
    a, s = MEM_APPS[app], MEM_SERVERS[server]
    if a.kind not in s.kinds:
        return f"{server} does not serve {a.kind.upper()}"
    if s.refork and not refork_flag:
        return "supervise has no --refork-after yet"
    if s.needs and not shutil.which(s.needs):
        return f"{s.needs} is not installed"
    for mod in (s.needs_module, a.needs_module):
        if mod and importlib.util.find_spec(mod) is None:
            return f"module {mod} is not installed"
    return None


def servers_for(app: str, smoke: bool) -> list[str]:
    """The default servers of a run on ``app``: every one that serves its kind
    (with --smoke: ours and the baseline)."""
    names = [n for n, s in MEM_SERVERS.items() if MEM_APPS[app].kind in s.kinds]
    return [n for n in names if n in SMOKE_SERVERS] if smoke else names
