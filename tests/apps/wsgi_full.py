"""A WSGI app that exercises the bridge over real HTTP: bodies, streaming, errors."""

import hashlib


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()]
    if path == "/stream":

        def pieces():
            start_response("200 OK", [("Content-Type", "text/plain")])
            for n in range(3):
                yield f"piece {n}\n".encode()

        return pieces()
    if path == "/error":
        raise RuntimeError("handler failed")
    start_response("200 OK", [])
    return [(environ["wsgi.multithread"] and b"threaded") or b"sync"]
