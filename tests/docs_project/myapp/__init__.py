"""myapp:app (an ASGI app) and myapp:main (a job), as the docs name them."""

from supervisor import Worker


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"hello from myapp\n"})


def main(worker: Worker) -> None:
    while not worker.stopping.wait(1.0):
        worker.count_work()
