"""A small but real Django project in one module, for the end-to-end tests.

Settings are configured in-process (no settings module, no database); the module is its
own ``ROOT_URLCONF``.  Importable on its own, so ``maitre-serve
tests.e2e.django_app:application`` serves it in a subprocess too.

* ``application``: ``get_wsgi_application()``.
* ``DOWNLOAD``: the path ``/download`` serves with ``FileResponse``; tests set it.
* ``OPENED_FILES``: every file ``/download`` opened (a test checks they get closed).
* ``FINISHED``: one entry per ``request_finished`` signal, which Django sends from the
  response's ``close()`` -- i.e. only when the server calls ``close()``.
"""

from __future__ import annotations

import json
import threading

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="maitre-e2e-tests-not-secret",
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        DATABASES={},
        TEMPLATES=[],
        USE_TZ=True,
        DEFAULT_CHARSET="utf-8",
        # no console/mail handlers: a 500 from the exception view is expected
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.signals import request_finished  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    FileResponse,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path, reverse  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

DOWNLOAD = None
OPENED_FILES: list = []
FINISHED: list = []
_finished_lock = threading.Lock()

STREAM_PARTS = [b"django part %d|" % i + b"z" * (500 * i) + b"\n" for i in range(6)]


def _on_request_finished(sender, **kwargs):
    with _finished_lock:
        FINISHED.append(sender)


request_finished.connect(_on_request_finished, dispatch_uid="maitre-e2e-finished")


def hello(request):
    return HttpResponse("hello from django\n", content_type="text/plain")


def json_view(request):
    return JsonResponse({"framework": "django", "numbers": [1, 2, 3], "unicode": "señor"})


@csrf_exempt
def form(request):
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    return JsonResponse(
        {
            "fields": {key: request.POST.getlist(key) for key in request.POST},
            "query": request.GET.get("q"),
        }
    )


@csrf_exempt
def echo_json(request):
    body = request.body
    return JsonResponse(
        {
            "received": json.loads(body),
            "body_length": len(body),
            "content_length": request.META.get("CONTENT_LENGTH"),
            "transfer_encoding": request.META.get("HTTP_TRANSFER_ENCODING"),
            "content_type": request.content_type,
        }
    )


def stream(request):
    name = request.GET.get("name", "nobody")

    def generate():
        yield b"streaming for " + name.encode() + b"\n"
        yield from STREAM_PARTS

    return StreamingHttpResponse(generate(), content_type="text/plain")


def download(request):
    f = open(DOWNLOAD, "rb")
    OPENED_FILES.append(f)
    return FileResponse(f, as_attachment=True, filename="data.bin")


def boom(request):
    raise RuntimeError("django view failed")


def meta(request):
    return JsonResponse(
        {
            "remote_addr": request.META["REMOTE_ADDR"],
            "host": request.get_host(),
            "script_name": request.META["SCRIPT_NAME"],
            "path": request.path,
            "path_info": request.path_info,
            "reverse": reverse("meta"),
            "absolute": request.build_absolute_uri(reverse("meta")),
            "method": request.method,
            "is_secure": request.is_secure(),
            "server_port": request.META["SERVER_PORT"],
            "user_agent": request.headers.get("User-Agent"),
            "x_custom": request.headers.get("X-Custom"),
        }
    )


urlpatterns = [
    path("", hello, name="hello"),
    path("json", json_view, name="json"),
    path("form", form, name="form"),
    path("echo-json", echo_json, name="echo-json"),
    path("stream", stream, name="stream"),
    path("download", download, name="download"),
    path("boom", boom, name="boom"),
    path("meta", meta, name="meta"),
]

application = get_wsgi_application()
