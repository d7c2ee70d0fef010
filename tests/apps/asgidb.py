"""An ASGI app whose requests query the worker's own async pool."""

import os

from supervisor import Database

db = Database()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    async with db.async_pool.connection() as conn:
        cur = await conn.execute("select current_setting('application_name')")
        (app_name,) = await cur.fetchone()
    body = f"pid={os.getpid()} app={app_name}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
