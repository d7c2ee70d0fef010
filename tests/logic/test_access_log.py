"""The access-log middleware, driven in the test process: it adds its request id
without changing the messages the app sends."""

from __future__ import annotations


def test_access_log_leaves_the_apps_messages_alone():
    import asyncio

    from supervisor.http.access_log import AccessLog

    start = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]}  # reused by the app

    async def app(scope, receive, send):
        await send(start)
        await send({"type": "http.response.body", "body": b"x"})

    sent = []

    async def send(message):
        sent.append(message)

    middleware = AccessLog(app, "X-Request-ID")
    for _ in range(2):
        scope = {"type": "http", "headers": [], "method": "GET", "path": "/", "query_string": b""}
        asyncio.run(middleware(scope, None, send))
    assert start["headers"] == [(b"a", b"b")]
    ids = [dict(m["headers"])[b"x-request-id"] for m in sent if m["type"] == "http.response.start"]
    assert len(set(ids)) == 2
