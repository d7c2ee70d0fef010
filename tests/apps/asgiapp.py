"""A raw ASGI app (with lifespan) for the HTTP tests."""

import asyncio
import logging
import os
import threading
import time

log = logging.getLogger("asgiapp")

STARTED = {"lifespan": False}

with open("/proc/self/cmdline", "rb") as _cmdline:
    _IN_SEED = b"worker 0" in _cmdline.read()  # the mold of generation 0 (titled so), not the probe
if _IN_SEED and os.environ.get("SLOW_SEED_IMPORT"):
    time.sleep(float(os.environ["SLOW_SEED_IMPORT"]))
if _IN_SEED and os.environ.get("THREAD_AT_SEED_IMPORT"):
    # what an SDK's init does at import: a thread that never ends (here only in that mold)
    threading.Thread(target=time.sleep, args=(3600,), name="sdk-flusher", daemon=True).start()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("FAIL_STARTUP"):
                    await send({"type": "lifespan.startup.failed", "message": "no config"})
                    return
                STARTED["lifespan"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if os.environ.get("LINGER") and not any(t.name == "exporter" for t in threading.enumerate()):
        # what a telemetry exporter or a scheduler does: a thread that never ends
        threading.Thread(target=time.sleep, args=(3600,), name="exporter", daemon=True).start()
    path = scope["path"]
    if path == "/sleep":
        log.info("request sleeping")
        await asyncio.sleep(float(os.environ.get("SLEEP_S", "1")))
    elif path == "/block":
        time.sleep(60)  # blocks the event loop
    elif path.endswith("/where"):
        body = f"{scope['root_path']}|{path}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    elif path == "/chunks":  # no length: chunked on HTTP/1.1, ended by closing on 1.0
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
        return
    elif path == "/late":  # the head now, the body once the client has seen the head
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(float(os.environ.get("LATE_S", "30")))
        await send({"type": "http.response.body", "body": b"late"})
        return
    elif path == "/not-modified":
        await send({"type": "http.response.start", "status": 304, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = f"pid={os.getpid()} lifespan={STARTED['lifespan']}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Legacy:
    """An ASGI 2 app (a class instantiated per connection)."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})


def create_app():
    """An app factory (--factory)."""
    return app
