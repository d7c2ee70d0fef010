"""Flask app for the conformance suite (tests/test_conformance.py)."""

import hashlib
import logging
import time

from flask import Flask, Response, redirect, request

app = Flask(__name__)
log = logging.getLogger("conformance")


def digest(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


@app.post("/upload")
def upload():
    return digest(request.files["file"].read())


@app.post("/raw")
def raw():
    return digest(request.get_data())


@app.get("/stream")
def stream():
    return Response((f"piece {n}\n" for n in range(3)), mimetype="text/plain")


@app.get("/endless")
def endless():
    def pieces():
        try:
            while True:
                yield b"x" * 1024
                time.sleep(0.01)
        finally:
            log.info("endless stream closed")

    return Response(pieces(), mimetype="application/octet-stream")


@app.get("/empty")
def empty():
    return "", 204


@app.get("/etag")
def etag():
    response = Response("versioned body", mimetype="text/plain")
    response.set_etag("v1")
    return response.make_conditional(request)


@app.get("/redirect")
def go():
    return redirect("/target", code=302)


@app.get("/cookie")
def cookie():
    response = Response("set")
    response.set_cookie("flavour", "oat", httponly=True)
    return response


@app.get("/whoami")
def whoami():
    return request.cookies.get("flavour", "nobody")


@app.get("/ünï/<name>")
def unicode_path(name: str):
    return f"{request.path}|{name}"
