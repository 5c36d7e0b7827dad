from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("json", views.json_view),
    path("form", views.form),
    path("stream", views.stream),
    path("upload", views.upload),
    path("boom", views.boom),
    path("admin/", admin.site.urls),
]
