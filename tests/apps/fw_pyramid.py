"""The shared framework route set on Pyramid (unmodified), for tests/test_frameworks.py.

Run: ``wizgy --chdir tests/apps fw_pyramid:app``. Pyramid has no exception view for a plain
``RuntimeError``, so /boom propagates out of the app and wizgy answers 500 and logs it.
"""

import hashlib

from pyramid.config import Configurator
from pyramid.response import Response

STREAM_CHUNKS = [f"chunk {i} of 5\n".encode() for i in range(5)]


def json_view(request):
    return {"framework": "pyramid", "ok": True}


def form(request):
    return {"name": request.POST["name"], "n": request.POST["n"]}


def upload(request):
    field = request.POST["file"]
    data = field.file.read()
    return {
        "filename": field.filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def stream(request):
    def generate():
        yield from STREAM_CHUNKS

    return Response(app_iter=generate(), content_type="text/plain")


def cookie_set(request):
    response = Response(json_body={"set": "oatmeal"})
    response.set_cookie("flavor", "oatmeal")
    return response


def cookie_get(request):
    return {"flavor": request.cookies.get("flavor")}


def boom(request):
    raise RuntimeError("boom from pyramid")


def segment(request):
    return {"segment": request.matchdict["segment"]}


ROUTES = [
    ("json", "/json", "GET", json_view, "json"),
    ("form", "/form", "POST", form, "json"),
    ("upload", "/upload", "POST", upload, "json"),
    ("stream", "/stream", "GET", stream, None),
    ("cookie_set", "/cookie/set", "GET", cookie_set, None),
    ("cookie_get", "/cookie/get", "GET", cookie_get, "json"),
    ("boom", "/boom", "GET", boom, None),
    ("segment", "/path/{segment}", "GET", segment, "json"),
]

with Configurator(settings={"pyramid.debug_all": False}) as config:
    for name, pattern, method, view, renderer in ROUTES:
        config.add_route(name, pattern)
        config.add_view(view, route_name=name, request_method=method, renderer=renderer)
    app = config.make_wsgi_app()

application = app
