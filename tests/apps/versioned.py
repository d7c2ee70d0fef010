"""An ASGI app that says which version of its code is running."""

VERSION = "1"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"version={VERSION}".encode()})
