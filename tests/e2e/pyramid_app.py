"""A Pyramid hello app: ``maitre-serve tests.e2e.pyramid_app:app``."""

from pyramid.config import Configurator
from pyramid.response import Response


def hello(request):
    return Response("hello from pyramid\n", content_type="text/plain")


def echo(request):
    return Response(body=request.body, content_type="text/plain")


with Configurator() as config:
    config.add_route("hello", "/")
    config.add_view(hello, route_name="hello")
    config.add_route("echo", "/echo")
    config.add_view(echo, route_name="echo", request_method="POST")
    app = config.make_wsgi_app()
