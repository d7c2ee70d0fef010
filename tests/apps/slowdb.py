"""ASGI (``app``) and WSGI (``wsgi``) apps for overload tests: each request
records its tag in the table ``ran`` (proof that its app reached the
database), then sleeps in PostgreSQL: ``/?tag=a&sleep=0.5``. ``/plain``
answers without the database; ``/upload`` reads the whole body, then says its length;
``/listening`` runs the query beside a task that waits for the client's disconnect,
as Django 5 and Quart do; WSGI's ``/stream?sleep=S`` streams 4 batches, one
checkout and one query of S seconds each."""

import asyncio
import os
from urllib.parse import parse_qs

from supervisor import Database

db = Database()


def _params(query: str) -> tuple[str, float]:
    q = parse_qs(query)
    return q.get("tag", [""])[0], float(q.get("sleep", ["0"])[0])


def _body(text: str) -> bytes:
    return f"{text} pid={os.getpid()}".encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/plain":
        body = _body("plain")
    elif scope["path"] == "/upload":
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = _body(f"got {size}")
    elif scope["path"] == "/listening":
        await receive()  # the (empty) body

        async def listen():
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(listen()), asyncio.ensure_future(_query(scope))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        body = tasks[1].result()
    else:
        body = await _query(scope)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def _query(scope):
    tag, sleep = _params(scope["query_string"].decode())
    async with db.async_pool.connection() as conn:
        await conn.execute("insert into ran (tag) values (%s)", (tag,))
        await conn.commit()
        await conn.execute("select pg_sleep(%s)", (sleep,))
        cur = await conn.execute("select pg_backend_pid()")
        (backend,) = await cur.fetchone()
    return _body(f"ok {tag} backend={backend}")


def _batches(sleep: float, n: int):
    for i in range(n):
        with db.connection() as conn:  # one checkout per batch, as an export streams
            conn.execute("select pg_sleep(%s)", (sleep,))
        yield f"batch {i}\n".encode()


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/stream":
        _, sleep = _params(environ.get("QUERY_STRING", ""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _batches(sleep, 4)
    if environ["PATH_INFO"] == "/plain":
        body = _body("plain")
    elif environ["PATH_INFO"] == "/upload":
        body = _body(f"got {len(environ['wsgi.input'].read())}")
    else:
        tag, sleep = _params(environ.get("QUERY_STRING", ""))
        with db.connection() as conn:
            conn.execute("insert into ran (tag) values (%s)", (tag,))
            conn.commit()
            conn.execute("select pg_sleep(%s)", (sleep,))
            (backend,) = conn.execute("select pg_backend_pid()").fetchone()
        body = _body(f"ok {tag} backend={backend}")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
