"""A Falcon hello app: ``maitre-serve tests.e2e.falcon_app:app``."""

import falcon


class Hello:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "hello from falcon\n"


class Echo:
    def on_post(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = req.bounded_stream.read()


app = falcon.App()
app.add_route("/", Hello())
app.add_route("/echo", Echo())
