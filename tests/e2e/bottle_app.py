"""A Bottle hello app: ``maitre-serve tests.e2e.bottle_app:app``."""

import bottle

app = bottle.Bottle()


@app.get("/")
def hello():
    bottle.response.content_type = "text/plain"
    return "hello from bottle\n"


@app.post("/echo")
def echo():
    bottle.response.content_type = "text/plain"
    return bottle.request.body.read()
