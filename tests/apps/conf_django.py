"""Django app (settings in this module) for the conformance suite."""

import hashlib
import logging
import time

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="conformance-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.http.ConditionalGetMiddleware"],
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,
    USE_TZ=True,
)
django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

log = logging.getLogger("conformance")


def digest(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


@csrf_exempt
def upload(request):
    return HttpResponse(digest(request.FILES["file"].read()))


@csrf_exempt
def raw(request):
    return HttpResponse(digest(request.body))


def stream(request):
    return StreamingHttpResponse((f"piece {n}\n" for n in range(3)), content_type="text/plain")


def endless(request):
    def pieces():
        try:
            while True:
                yield b"x" * 1024
                time.sleep(0.01)
        finally:
            log.info("endless stream closed")

    return StreamingHttpResponse(pieces(), content_type="application/octet-stream")


def empty(request):
    return HttpResponse(status=204)


def etag(request):
    response = HttpResponse("versioned body", content_type="text/plain")
    response["ETag"] = '"v1"'
    return response


def go(request):
    return HttpResponseRedirect("/target")


def cookie(request):
    response = HttpResponse("set")
    response.set_cookie("flavour", "oat", httponly=True)
    return response


def whoami(request):
    return HttpResponse(request.COOKIES.get("flavour", "nobody"))


def unicode_path(request, name):
    return HttpResponse(f"{request.path}|{name}")


urlpatterns = [
    path("upload", upload),
    path("raw", raw),
    path("stream", stream),
    path("endless", endless),
    path("empty", empty),
    path("etag", etag),
    path("redirect", go),
    path("cookie", cookie),
    path("whoami", whoami),
    path("ünï/<str:name>", unicode_path),
]

app = WSGIHandler()
