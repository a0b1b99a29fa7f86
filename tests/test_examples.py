"""Every app in examples/ served by the real ``wizgy`` command, checked over a socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import request

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_hello(serve):
    server = serve("hello:app", cwd=EXAMPLES)
    resp = request(server.addr, "GET", "/")
    assert resp.status == 200
    assert resp.body == b"Hello, world!"
    assert resp.header("Content-Length") == "13"
    assert not resp.chunked
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"


def test_hello_bare_module_means_application(serve):
    server = serve("hello", cwd=EXAMPLES)
    resp = request(server.addr, "GET", "/anything?at=all")
    assert resp.status == 200
    assert resp.body == b"Hello, world!"


def test_class_app_instance(serve):
    server = serve("class_app:app", cwd=EXAMPLES)
    resp = request(server.addr, "GET", "/Ada")
    assert resp.status == 200
    assert resp.body == b"Hello, Ada!"
    resp = request(server.addr, "GET", "/caf%C3%A9")
    assert resp.body == "Hello, café!".encode()
    resp = request(server.addr, "GET", "/")
    assert resp.body == b"Hello, world!"


def test_class_app_iterable_class_is_closed(serve):
    server = serve("class_app:Countdown", "--threads", "2", cwd=EXAMPLES)
    resp = request(server.addr, "GET", "/")
    assert resp.status == 200
    assert resp.body == b"3\n2\n1\nliftoff!\n"
    assert resp.chunked  # no Content-Length from the app, HTTP/1.1
    server.wait_for(r"countdown closed", timeout=10)


@pytest.fixture
def dispatcher(serve):
    return serve("dispatcher:app", cwd=EXAMPLES)


def test_dispatcher_mounts_hello(dispatcher):
    for path in ("/hello", "/hello/", "/hello/deeper/path"):
        resp = request(dispatcher.addr, "GET", path)
        assert resp.status == 200, path
        assert resp.body == b"Hello, world!"


@pytest.mark.parametrize(
    ("target", "path_info", "query"),
    [
        ("/api/items/7?x=1&y=2", "/items/7", "x=1&y=2"),
        ("/api", "", ""),
        ("/api/", "/", ""),
        ("/api/caf%C3%A9", "/caf\u00c3\u00a9", ""),  # PATH_INFO is latin-1 "bytes in str"
    ],
)
def test_dispatcher_moves_prefix_to_script_name(dispatcher, target, path_info, query):
    resp = request(dispatcher.addr, "GET", target)
    assert resp.status == 200
    assert resp.json() == {
        "app": "api",
        "script_name": "/api",
        "path_info": path_info,
        "query_string": query,
    }


@pytest.mark.parametrize("path", ["/", "/nowhere", "/helloworld", "/apiary"])
def test_dispatcher_404(dispatcher, path):
    resp = request(dispatcher.addr, "GET", path)
    assert resp.status == 404
    assert resp.body == b"Not Found"


def test_dispatcher_under_root_path(serve):
    server = serve("dispatcher:app", "--root-path", "/site", cwd=EXAMPLES)
    resp = request(server.addr, "GET", "/site/api/items/7")
    assert resp.status == 200
    assert resp.json()["script_name"] == "/site/api"
    assert resp.json()["path_info"] == "/items/7"
    resp = request(server.addr, "GET", "/site/hello")
    assert resp.body == b"Hello, world!"


@pytest.mark.parametrize(
    ("spec", "framework"),
    [
        ("flask_app:app", "flask"),
        ("django_app:application", "django"),
        ("pyramid_app:app", "pyramid"),
    ],
)
def test_framework_examples(serve, spec, framework):
    server = serve(spec, cwd=EXAMPLES)
    resp = request(server.addr, "GET", "/")
    assert resp.status == 200
    assert resp.body == f"Hello from {framework.capitalize()}!".encode()
    resp = request(server.addr, "GET", "/greet/Ada")
    assert resp.status == 200
    assert resp.json() == {"greeting": "Hello, Ada!", "framework": framework}
    resp = request(server.addr, "GET", "/greet/Ada/too/deep")
    assert resp.status == 404
