"""A WSGI app that says which worker answered (for reload and stop tests).

``/sleep`` takes ``SLEEP_S`` seconds in its request thread, logging when it starts and ends.
"""

import logging
import os
import time

log = logging.getLogger("wsgipid")


def app(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        log.info("request sleeping")
        time.sleep(float(os.environ.get("SLEEP_S", "1")))
        log.info("request slept")
    body = f"pid={os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
