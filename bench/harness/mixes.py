"""Varied GET traffic for the memory bench: what a real app's workers see.

A mix is a function from a random generator to one (path, Accept-Language)
pair; ``run_mix`` sends N of them from a few client threads, each on a
keep-alive connection that it replaces after ``per_conn`` requests (or when
the server closes it), and stops at N or at its deadline, whichever comes
first. Replacing connections spreads the requests over every worker whatever
the server: a connection kept for the whole run stays with one worker, and
with as many clients as workers some workers would get two and some none. The status of every answer, the
connection errors and the worker pids that answered (``X-Worker-Pid``) are
counted. Seeded: the same seed sends the same requests in the same order per
client.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

Mix = Callable[[random.Random], str]

LANGS = (
    "en", "fr", "de", "es", "ja", "pt-br", "it", "nl",
    "fr-CA,fr;q=0.9,en;q=0.5", "de-CH", "es-MX,es;q=0.8", "",
)  # fmt: skip
ADMIN_STATIC = (
    "admin/css/base.css", "admin/css/login.css", "admin/css/forms.css", "admin/css/responsive.css",
    "admin/css/nav_sidebar.css", "admin/css/dark_mode.css", "admin/js/core.js", "admin/js/theme.js",
    "admin/js/nav_sidebar.js", "admin/img/icon-alert.svg", "admin/img/icon-calendar.svg",
)  # fmt: skip


def django_path(rng: random.Random) -> str:
    """Admin login and redirects, template pages, paginated lists, 404s, static files,
    a few ORM reads (sqlite)."""
    k = rng.random()
    if k < 0.20:
        return "/admin/login/" + rng.choice(("", "?next=/admin/", "?next=/admin/auth/user/"))
    if k < 0.25:
        return rng.choice(("/admin/", "/admin/auth/user/", "/admin/auth/group/", "/admin/password_reset/"))
    if k < 0.35:
        return "/"
    if k < 0.42:
        return "/about/?q=" + "x" * rng.randint(1, 4)
    if k < 0.54:
        return f"/items/?page={rng.randint(1, 22)}"  # past 20: the last page
    if k < 0.66:
        return f"/items/{rng.randint(1, 520)}/"  # over 500: 404
    if k < 0.74:
        return f"/contact/?name=n{rng.randint(1, 99)}"
    if k < 0.84:
        return rng.choice(("/nope/", "/items/x/", "/admin/nothing/", f"/missing/{rng.randint(1, 9999)}"))
    if k < 0.97:
        return "/static/" + rng.choice(ADMIN_STATIC)
    return "/db/"


def fastapi_path(rng: random.Random) -> str:
    """HTML pages, JSON lists and items (pydantic), quotes, 404s and 422s."""
    k = rng.random()
    if k < 0.15:
        return "/" + rng.choice(("", "?lang=fr", "?lang=ja", "?lang=xx"))
    if k < 0.35:
        return f"/items?page={rng.randint(1, 26)}"
    if k < 0.55:
        cat = rng.choice(("", "&category=books", "&category=tools", "&category=games", "&category=food"))
        return f"/api/items?page={rng.randint(1, 8)}&size={rng.choice((5, 20, 50))}{cat}"
    if k < 0.75:
        return f"/api/items/{rng.randint(1, 520)}"  # over 500: 404
    if k < 0.87:
        return f"/api/quote?item_id={rng.randint(1, 510)}&quantity={rng.randint(1, 1100)}"  # some 404, 422
    if k < 0.94:
        return rng.choice(("/api/items/x", "/items?page=0", "/api/items?size=500", "/api/quote?item_id=y"))
    return rng.choice(("/nope", "/api/nothing", f"/missing/{rng.randint(1, 9999)}"))


MIXES: dict[str, Mix] = {"django": django_path, "fastapi": fastapi_path}


def run_mix(
    port: int,
    mix: Mix,
    n: int,
    clients: int = 4,
    deadline_s: float = 60.0,
    seed: int = 20,
    timeout: float = 10.0,
    per_conn: int = 20,
) -> dict[str, Any]:
    """Send ``n`` requests of ``mix`` (at most ``deadline_s`` seconds); what came back."""
    lock = threading.Lock()
    left = [n]
    status: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    pids: Counter[int] = Counter()
    end = time.monotonic() + deadline_s

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn: http.client.HTTPConnection | None = None
        used = 0
        while time.monotonic() < end:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            path, lang = mix(rng), rng.choice(LANGS)
            headers = {"Accept-Language": lang} if lang else {}
            try:
                if conn is not None and used >= per_conn:
                    conn.close()
                    conn = None
                if conn is None:
                    conn, used = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout), 0
                used += 1
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                pid = resp.getheader("X-Worker-Pid")
                with lock:
                    status[str(resp.status)] += 1
                    if pid and pid.isdigit():
                        pids[int(pid)] += 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=deadline_s + timeout + 5)
    elapsed = time.monotonic() - t0
    done = sum(status.values()) + sum(errors.values())
    return {
        "asked": n,
        "sent": done,
        "elapsed_s": round(elapsed, 2),
        "rps": round(done / elapsed, 1) if elapsed > 0 else None,
        "deadline_hit": done < n,
        "status": dict(sorted(status.items())),
        "errors": dict(sorted(errors.items())),
        "pids": {str(p): c for p, c in sorted(pids.items())},
    }
