from django.http import FileResponse, JsonResponse
from django.urls import path

from apps import DATA_FILE, JSON_FIELDS


def index(request):
    return JsonResponse(JSON_FIELDS)


def file(request):
    # Django hands the open file to wsgi.file_wrapper (4 KiB blocks) when the server has one.
    return FileResponse(open(DATA_FILE, "rb"))


urlpatterns = [path("", index), path("file", file)]
