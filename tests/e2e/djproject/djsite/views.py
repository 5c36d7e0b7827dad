"""Views of the end-to-end test project."""

import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.template import engines
from django.views.decorators.csrf import csrf_exempt

STREAM_CHUNKS = 200

FORM = engines["django"].from_string(
    '<form method="post">{% csrf_token %}<input name="name"></form>'
)


def json_view(request):
    return JsonResponse({"framework": "django", "path": request.path, "method": request.method})


def form(request):
    # CsrfViewMiddleware has already refused a POST without a valid token (403).
    if request.method == "POST":
        return HttpResponse(f"thanks, {request.POST['name']}", content_type="text/plain")
    return HttpResponse(FORM.render({}, request))


def stream(request):
    chunks = (f"chunk {i:03d}\n".encode() for i in range(STREAM_CHUNKS))
    return StreamingHttpResponse(chunks, content_type="text/plain")


@csrf_exempt
def upload(request):
    data = request.FILES["file"].read()
    return JsonResponse({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})


def boom(request):
    raise RuntimeError("djsite view failed")
