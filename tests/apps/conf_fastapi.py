"""FastAPI (ASGI) app for the conformance suite."""

import asyncio
import hashlib
import logging

from fastapi import FastAPI, File, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse, RedirectResponse, StreamingResponse

app = FastAPI()
log = logging.getLogger("conformance")


def digest(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


@app.post("/upload", response_class=PlainTextResponse)
async def upload(file: UploadFile = File(...)) -> str:  # noqa: B008 - FastAPI's idiom
    return digest(await file.read())


@app.post("/raw", response_class=PlainTextResponse)
async def raw(request: Request) -> str:
    return digest(await request.body())


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def pieces():
        for n in range(3):
            yield f"piece {n}\n"

    return StreamingResponse(pieces(), media_type="text/plain")


@app.get("/endless")
async def endless() -> StreamingResponse:
    async def pieces():
        try:
            while True:
                yield b"x" * 1024
                await asyncio.sleep(0.01)
        finally:
            log.info("endless stream closed")

    return StreamingResponse(pieces(), media_type="application/octet-stream")


@app.get("/empty", status_code=204)
async def empty() -> Response:
    return Response(status_code=204)


@app.api_route("/etag", methods=["GET", "HEAD"])
async def etag(request: Request) -> Response:
    if request.headers.get("if-none-match") == '"v1"':
        return Response(status_code=304, headers={"ETag": '"v1"'})
    return PlainTextResponse("versioned body", headers={"ETag": '"v1"'})


@app.get("/redirect")
async def go() -> RedirectResponse:
    return RedirectResponse("/target", status_code=302)


@app.get("/cookie", response_class=PlainTextResponse)
async def cookie(response: Response) -> str:
    response.set_cookie("flavour", "oat", httponly=True)
    return "set"


@app.get("/whoami", response_class=PlainTextResponse)
async def whoami(request: Request) -> str:
    return request.cookies.get("flavour", "nobody")


@app.get("/ünï/{name}", response_class=PlainTextResponse)
async def unicode_path(request: Request, name: str) -> str:
    return f"{request.url.path}|{name}"
