"""Apps that say what they saw: the client address, scheme and request id
(ASGI ``app`` and WSGI ``wsgi``), and a WebSocket echo (``app``)."""

import asyncio
import json
import logging
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"pid={os.getpid()}"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    if scope["path"] == "/sleep":
        logging.getLogger("echo").warning("sleeping")
        await asyncio.sleep(float(scope["query_string"] or 2))
    headers = dict(scope["headers"])
    seen = {
        "client": scope["client"][0] if scope.get("client") else None,
        "scheme": scope["scheme"],
        "request_id": headers.get(b"x-request-id", b"").decode() or None,
        "pid": os.getpid(),
    }
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


def wsgi(environ, start_response):
    seen = {
        "client": environ.get("REMOTE_ADDR"),
        "scheme": environ["wsgi.url_scheme"],
        "request_id": environ.get("HTTP_X_REQUEST_ID"),
        "pid": os.getpid(),
    }
    start_response("201 Created", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
