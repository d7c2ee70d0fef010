"""An ASGI app that sends its response's head, then, a moment later, its
body, as a framework's streaming or templating response does: a retiring
worker sees connections whose head is out and body is not."""

import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await asyncio.sleep(0.002)
    await send({"type": "http.response.body", "body": f"pid={os.getpid()}".encode()})
