"""Target for bench/supervisor_bench.py, shared by pg-supervise and gunicorn.

* ``main(worker)`` is the pg-supervise target: it idles until asked to stop.
* ``app(environ, start_response)`` is a trivial WSGI app for gunicorn.

``BENCH_IMPORT_DELAY`` (seconds, default 0) makes the import slow, and
``BENCH_IMPORT_MODE`` (``sleep``, the default, or ``cpu``) says whether the
delay sleeps or busy-loops; with ``--preload`` both servers pay it once, in
the master, otherwise once per worker.
"""

import os
import time

_delay = float(os.environ.get("BENCH_IMPORT_DELAY") or 0)
if _delay > 0:
    if os.environ.get("BENCH_IMPORT_MODE", "sleep") == "cpu":
        _end = time.perf_counter() + _delay
        while time.perf_counter() < _end:
            pass
    else:
        time.sleep(_delay)


def main(worker):
    worker.stopping.wait()


def app(environ, start_response):
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
