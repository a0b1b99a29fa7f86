"""A small Pyramid app served by wizgy.

Run with wizgy from the repository root::

    wizgy --chdir examples pyramid_app:app

``GET /`` says hello as text; ``GET /greet/{name}`` answers JSON.
"""

from pyramid.config import Configurator
from pyramid.response import Response


def index(request):
    return Response("Hello from Pyramid!", content_type="text/plain")


def greet(request):
    name = request.matchdict["name"]
    return {"greeting": f"Hello, {name}!", "framework": "pyramid"}


with Configurator() as config:
    config.add_route("index", "/")
    config.add_view(index, route_name="index")
    config.add_route("greet", "/greet/{name}")
    config.add_view(greet, route_name="greet", renderer="json")
    app = config.make_wsgi_app()

application = app
