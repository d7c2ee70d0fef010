"""A WSGI app for the HTTP edge cases (tests/test_http_edges.py); it logs what
it does, so tests can wait on it.

Routes: /stream (endless pieces, the request body left unread, or read by
``?read=N`` bytes first), /hang (blocks its thread), /long (a body longer than
its Content-Length), /nostart (returns without start_response), /upload
(413 past 1 kB unless read), /file?path=P (wsgi.file_wrapper), /not-modified
(304 with a length), /where (SCRIPT_NAME and PATH_INFO), anything else: "ok".
"""

import logging
import threading
import time
from urllib.parse import parse_qs

log = logging.getLogger("wsgi_edge")
_hang = threading.Event()  # never set: /hang waits until the worker is killed


class _Closing:
    """An iterable that logs when the server closes it."""

    def __init__(self, pieces, what):
        self.pieces = pieces
        self.what = what

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        log.info("closed %s", self.what)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/stream":
        read = int(query.get("read", "0"))
        if read:
            environ["wsgi.input"].read(read)

        def forever():
            start_response("200 OK", [("Content-Type", "text/plain")])
            n = 0
            try:
                while True:
                    n += 1
                    yield b"piece %d\n" % n
                    time.sleep(0.01)
            finally:
                log.info("stream closed after %d pieces", n)

        return forever()
    if path == "/hang":
        log.info("hanging")
        _hang.wait()
    if path == "/long":
        start_response("200 OK", [("Content-Length", "8")])
        if query.get("gen"):
            return (piece for piece in [b"0123", b"45", b"6789"])
        return [b"0123", b"45", b"6789"]
    if path == "/nostart":
        return _Closing([b"never sent"], "nostart")
    if path == "/upload":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > 1024:
            start_response("413 Content Too Large", [("Content-Type", "text/plain")])
            return [b"too large"]
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d" % len(data)]
    if path == "/file":
        f = open(query["path"], "rb")  # noqa: SIM115 - the server closes it through the wrapper
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 1 << 16)
    if path == "/not-modified":
        start_response("304 Not Modified", [("Content-Length", "5"), ("ETag", '"v1"')])
        return [b""]
    if path == "/where":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode("latin-1")]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
