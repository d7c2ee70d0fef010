"""An ASGI app on the worker's own async pool.

    supervise examples.web.asgi_app:app -w 2 --database-url postgresql://... \
        --migrations examples/web/migrations

GET /anything  records a visit and says how many that path has had
"""

import json
import os

from supervisor import Database

db = Database()  # the --database-url database; each worker opens its own pool


async def app(scope, receive, send):
    if scope["type"] == "lifespan":  # nothing to set up: the pool is opened for us
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    async with db.async_pool.connection() as conn:
        await conn.execute("insert into visits (path, pid) values (%s, %s)", (scope["path"], os.getpid()))
        cur = await conn.execute("select count(*) from visits where path = %s", (scope["path"],))
        (count,) = await cur.fetchone()
    body = json.dumps({"path": scope["path"], "visits": count, "pid": os.getpid()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
