"""app:main (a job) and app:app (an ASGI app), as the docs name them."""

from supervisor import Worker


def main(worker: Worker) -> None:
    while not worker.stopping.wait(1.0):
        with worker.db.connection() as conn:
            conn.execute("select 1")


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"hello\n"})
