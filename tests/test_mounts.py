"""--mount PREFIX=APP and --scripts PREFIX=DIR: several apps in one wizgy, routed by URL prefix
(issue 18), from the outside over real sockets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_wizgy
from helpers import request

MOUNTS = ("--mount", "/api=mount_apps:api", "--mount", "/api/v2=mount_apps:api_v2")


def seen(server, target: str) -> dict:
    resp = request(server.addr, "GET", target)
    assert resp.status == 200, (target, resp.status, resp.body[:200])
    return resp.json()


ROUTES = [
    # target, app, SCRIPT_NAME, PATH_INFO
    ("/", "main", "", "/"),
    ("/other/page", "main", "", "/other/page"),
    ("/api", "api", "/api", ""),
    ("/api/", "api", "/api", "/"),
    ("/api/users/7", "api", "/api", "/users/7"),
    ("/apix", "main", "", "/apix"),
    ("/api/v2", "api_v2", "/api/v2", ""),
    ("/api/v2/users", "api_v2", "/api/v2", "/users"),
    ("/api/v21", "api", "/api", "/v21"),
    ("/api%2Fv2/x", "api_v2", "/api/v2", "/x"),  # routed on the decoded path, as PATH_INFO is
]


@pytest.mark.parametrize("target, app, script_name, path_info", ROUTES)
def test_the_longest_mount_on_a_segment_boundary_gets_the_request(
    serve, target, app, script_name, path_info
):
    server = serve("mount_apps:main", "--threads", "2", *MOUNTS)
    data = seen(server, target)
    assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == (app, script_name, path_info)


def test_a_mount_keeps_the_query_string(serve):
    server = serve("mount_apps:main", "--threads", "2", *MOUNTS)
    assert seen(server, "/api/x?a=1&b=2")["QUERY_STRING"] == "a=1&b=2"


def test_root_path_comes_before_the_mount_prefix_in_script_name(serve):
    server = serve("mount_apps:main", "--threads", "2", "--root-path", "/site", *MOUNTS)
    data = seen(server, "/site/api/users")
    assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == ("api", "/site/api", "/users")
    # a proxy that already stripped the root path: the mount still matches
    data = seen(server, "/api/users")
    assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == ("api", "/site/api", "/users")
    data = seen(server, "/site/else")
    assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == ("main", "/site", "/else")


def test_without_a_positional_app_what_no_mount_takes_is_a_404_from_wizgy(serve):
    server = serve("", "--mount", "/api=mount_apps:api", "--threads", "2")  # APP is optional
    assert seen(server, "/api/x")["app"] == "api"
    for target in ("/", "/apix", "/else/where"):
        resp = request(server.addr, "GET", target)
        assert resp.status == 404, (target, resp.status)
        assert resp.body == b"Not Found\n"
    # and the server keeps serving
    assert seen(server, "/api")["app"] == "api"


def test_mounts_work_with_several_workers_and_preload(serve):
    server = serve("mount_apps:main", "--workers", "2", "--threads", "2", "--preload", *MOUNTS)
    assert seen(server, "/api/v2/x")["app"] == "api_v2"
    assert seen(server, "/x")["app"] == "main"


def test_the_routing_table_is_logged_at_start(serve):
    server = serve("mount_apps:main", "--threads", "2", *MOUNTS)
    log = server.log()
    assert "route /api -> app mount_apps:api" in log, log
    assert "route /api/v2 -> app mount_apps:api_v2" in log, log
    assert "route anything else -> app mount_apps:main" in log, log


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--mount", "/x"], ["--mount", "PREFIX=APP"]),
        (["--mount", "x=mount_apps:api"], ["--mount", "start with '/'"]),
        (["--mount", "/=mount_apps:api"], ["--mount", "positional APP"]),
        (["--mount", "/a=mount_apps:api", "--mount", "/a/=mount_apps:admin"], ["/a", "twice"]),
        (["--scripts", "/cgi=./no-such-dir"], ["--scripts", "no-such-dir"]),
        (["--scripts", "/cgi=mount_apps.py"], ["--scripts", "not a directory"]),
    ],
)
def test_a_bad_mount_is_one_usage_error_line(args, words):
    result = run_wizgy(*args, "mount_apps:main", timeout=10)
    lines = error_lines(result)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("wizgy: error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_mounted_app_that_fails_to_import_is_the_usual_error_and_exit():
    result = run_wizgy(
        "--bind", "127.0.0.1:0", "--mount", "/b=cli_broken:app", "mount_apps:main", timeout=20
    )
    lines = error_lines(result)
    assert result.returncode == 1, result.stderr
    assert lines[0].startswith("wizgy: error:") and "cli_broken" in lines[0], result.stderr
    assert "cli_broken exploded on import" in result.stderr


# --- --scripts ----------------------------------------------------------------------------------

CTIME = """
import time

def application(environ, start_response):
    body = ("%s %s %s" % (time.ctime(), environ["SCRIPT_NAME"], environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def scripts_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A scripts directory with traps beside the one script; returns (dir, marker file)."""
    marker = tmp_path / "imported-what-it-must-not"
    trap = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\napplication = None\n"
    scripts = tmp_path / "wsgipython"
    (scripts / "sub").mkdir(parents=True)
    (scripts / "ctime.py").write_text(CTIME)
    (scripts / "sayhello.py").write_text(
        textwrap.dedent(
            """
            def application(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"hello"]
            """
        )
    )
    (scripts / "helper.py").write_text("VALUE = 1\n")  # no application: not a script
    (scripts / "sub" / "inner.py").write_text(trap)
    (scripts / ".hidden.py").write_text(trap)
    (scripts / "notes.txt").write_text(trap)
    outside = tmp_path / "outside.py"
    outside.write_text(trap)
    (scripts / "linked.py").symlink_to(outside)
    return scripts, marker


def test_scripts_serves_each_script_at_its_exact_file_name_and_nothing_else(serve, tmp_path):
    scripts, marker = scripts_dir(tmp_path)
    server = serve("", "--scripts", f"/cgi={scripts}", "--threads", "2")
    resp = request(server.addr, "GET", "/cgi/ctime.py/extra")
    assert resp.status == 200, resp.body
    assert resp.body.decode().endswith(" /cgi/ctime.py /extra"), resp.body
    assert request(server.addr, "GET", "/cgi/sayhello.py").body == b"hello"
    for target in (
        "/cgi/ctime",
        "/cgi/CTIME.PY",
        "/cgi/ctime.pyc",
        "/cgi/helper.py",
        "/cgi/sub/inner.py",
        "/cgi/.hidden.py",
        "/cgi/linked.py",
        "/cgi/notes.txt",
        "/cgi/",
        "/ctime.py",
    ):
        assert request(server.addr, "GET", target).status == 404, target
    assert not marker.exists(), marker.read_text()
    log = server.log()
    assert "route /cgi/ctime.py -> script" in log, log
    assert "inner.py" not in log and "linked.py" not in log


def test_a_broken_script_is_an_error_naming_its_file(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "broken.py").write_text("raise RuntimeError('broken script marker')\n")
    result = run_wizgy("--bind", "127.0.0.1:0", "--scripts", f"/s={scripts}", timeout=20)
    lines = error_lines(result)
    assert result.returncode == 1, result.stderr
    assert lines[0].startswith("wizgy: error:"), result.stderr
    assert str(scripts / "broken.py") in lines[0], lines[0]
    assert "broken script marker" in result.stderr


def test_the_seeds_layout_pages_and_scripts_from_one_process(serve, tmp_path):
    # the seeds' server: html/ with index.html at /, and a script directory of python programs
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<h1>home</h1>")
    scripts, _ = scripts_dir(tmp_path)
    server = serve("", "--static", f"/={html}", "--scripts", f"/cgi={scripts}", "--threads", "2")
    page = request(server.addr, "GET", "/")
    assert page.status == 200 and page.body == b"<h1>home</h1>"
    assert page.header("content-type").startswith("text/html")
    script = request(server.addr, "GET", "/cgi/ctime.py")
    assert script.status == 200 and b"/cgi/ctime.py" in script.body
    assert request(server.addr, "GET", "/nothing.html").status == 404
