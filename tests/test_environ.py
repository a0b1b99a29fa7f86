"""PEP 3333 environ clauses: one request to ``echo:app`` over a real socket per clause.

``echo:app`` answers JSON with the environ (tuples become lists, non-JSON values their type
name), the type name of every value, and the request body it read.
"""

from __future__ import annotations

import os
import socket

import pytest
from conftest import APPS, WIZGY, Server
from helpers import Reader, Response, connect

REQUIRED_STR_KEYS = [
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
]

# CGI meta-variables (RFC 3875) plus the well-known extras of the contract.
CGI_KEYS = {
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "GATEWAY_INTERFACE",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_IDENT",
    "REMOTE_PORT",
    "REMOTE_USER",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "RAW_URI",
    "REQUEST_URI",
}


def start(*options: str, env: dict | None = None) -> Server:
    server = Server([*WIZGY, "--bind", "127.0.0.1:0", *options, "echo:app"], APPS, env)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def echo():
    server = start("--threads", "4")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rooted():
    server = start("--threads", "2", "--root-path", "/app")
    yield server
    server.stop()


def _bytes(value) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def build(
    method: str = "GET",
    target="/",
    headers=(),
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """Exact request bytes. ``target`` and header names/values may be str (latin-1) or bytes;
    Host and Connection: close are added unless given, Content-Length when there is a body."""
    names = {_bytes(name).lower() for name, _ in headers}
    lines = [_bytes(method) + b" " + _bytes(target) + b" " + _bytes(version)]
    if b"host" not in names:
        lines.append(b"Host: localhost")
    if b"connection" not in names:
        lines.append(b"Connection: close")
    if body and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(addr, data: bytes) -> Response:
    with connect(addr, timeout=10) as sock:
        sock.sendall(data)
        return Reader(sock).response()


def echo_json(server: Server, *args, **kwargs) -> dict:
    resp = exchange(server.addr, build(*args, **kwargs))
    assert resp.status == 200, (resp.status, resp.body[:500])
    return resp.json()


def environ_of(server: Server, *args, **kwargs) -> dict:
    return echo_json(server, *args, **kwargs)["environ"]


def chunked(body: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


# --- required keys and their types --------------------------------------------------------


def test_every_required_cgi_key_is_present_as_a_str(echo):
    types = echo_json(echo, target="/p?q=1")["types"]
    for key in REQUIRED_STR_KEYS:
        assert types.get(key) == "str", (key, types.get(key))


def test_every_key_without_a_dot_is_a_native_str(echo):
    types = echo_json(
        echo,
        "POST",
        "/p?q=1",
        headers=[("Content-Type", "text/plain"), ("X-Custom", "v")],
        body=b"hello",
    )["types"]
    wrong = {key: name for key, name in types.items() if "." not in key and name != "str"}
    assert wrong == {}


def test_wsgi_version_is_the_tuple_1_0(echo):
    data = echo_json(echo)
    assert data["types"]["wsgi.version"] == "tuple"
    assert data["environ"]["wsgi.version"] == [1, 0]


def test_server_software_is_wizgy_and_its_version(echo):
    # issue 23: gunicorn sets gunicorn/VERSION; apps and middleware log it
    import wizgy

    assert environ_of(echo)["SERVER_SOFTWARE"] == f"wizgy/{wizgy.__version__}"


def test_wsgi_url_scheme_is_http(echo):
    assert environ_of(echo)["wsgi.url_scheme"] == "http"


def test_wsgi_input_and_wsgi_errors_are_present(echo):
    environ = environ_of(echo)
    assert "wsgi.input" in environ
    assert "wsgi.errors" in environ


def test_wsgi_file_wrapper_is_present(echo):
    assert "wsgi.file_wrapper" in environ_of(echo)


@pytest.mark.parametrize(
    "key", ["wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"]
)
def test_wsgi_flag_is_a_bool(echo, key):
    assert echo_json(echo)["types"].get(key) == "bool"


def test_wsgi_run_once_is_false(echo):
    assert environ_of(echo)["wsgi.run_once"] is False


def test_wsgi_multiprocess_is_false_for_a_single_process(echo):
    assert environ_of(echo)["wsgi.multiprocess"] is False


def test_wsgi_input_terminated_is_true(echo):
    assert environ_of(echo)["wsgi.input_terminated"] is True


def test_wsgi_multithread_is_true_with_four_threads(echo):
    assert environ_of(echo)["wsgi.multithread"] is True


def test_wsgi_multithread_is_false_with_one_thread(serve):
    server = serve("echo:app", "--threads", "1")
    assert environ_of(server)["wsgi.multithread"] is False


def test_request_method_is_passed_verbatim(echo):
    environ = environ_of(echo, "PUT", "/thing", body=b"data")
    assert environ["REQUEST_METHOD"] == "PUT"


# --- PATH_INFO, QUERY_STRING and the raw target --------------------------------------------


def test_path_info_is_percent_decoded(echo):
    assert environ_of(echo, target="/a%20b%41")["PATH_INFO"] == "/a bA"


def test_path_info_percent_encoded_utf8_is_latin1_chars(echo):
    assert environ_of(echo, target="/caf%C3%A9")["PATH_INFO"] == "/caf\xc3\xa9"


def test_path_info_raw_utf8_bytes_in_target_are_latin1_chars(echo):
    assert environ_of(echo, target=b"/caf\xc3\xa9")["PATH_INFO"] == "/caf\xc3\xa9"


def test_path_info_decodes_an_encoded_slash(echo):
    assert environ_of(echo, target="/a%2Fb%2fc")["PATH_INFO"] == "/a/b/c"


def test_path_info_keeps_repeated_slashes(echo):
    assert environ_of(echo, target="///x")["PATH_INFO"] == "///x"


def test_path_info_excludes_the_query_string(echo):
    assert environ_of(echo, target="/p/q?x=1")["PATH_INFO"] == "/p/q"


def test_query_string_is_raw_and_still_percent_encoded(echo):
    environ = environ_of(echo, target="/p?a=%20b&c=d+e&u=caf%C3%A9&s=%2F")
    assert environ["QUERY_STRING"] == "a=%20b&c=d+e&u=caf%C3%A9&s=%2F"


def test_query_string_is_empty_when_the_target_has_none(echo):
    environ = environ_of(echo, target="/p")
    assert "QUERY_STRING" in environ
    assert environ["QUERY_STRING"] == ""


def test_raw_uri_and_request_uri_are_the_undecoded_target(echo):
    target = "/caf%C3%A9/a%2Fb?q=%41&r=+"
    environ = environ_of(echo, target=target)
    assert environ["RAW_URI"] == target
    assert environ["REQUEST_URI"] == target


# --- CONTENT_TYPE, CONTENT_LENGTH and HTTP_ headers ----------------------------------------


def test_content_type_and_length_have_no_http_prefix(echo):
    environ = environ_of(
        echo, "POST", "/p", headers=[("Content-Type", "text/plain; charset=x")], body=b"hello"
    )
    assert environ["CONTENT_TYPE"] == "text/plain; charset=x"
    assert environ["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ


def test_content_type_and_length_are_absent_when_not_sent(echo):
    environ = environ_of(echo, "GET", "/p")
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ


def test_content_length_is_absent_for_a_chunked_request(echo):
    data = echo_json(
        echo,
        "POST",
        "/p",
        headers=[("Transfer-Encoding", "chunked")],
        body=chunked(b"hello chunked world", 5),
    )
    assert "CONTENT_LENGTH" not in data["environ"]
    assert "HTTP_CONTENT_LENGTH" not in data["environ"]
    assert data["body"] == "hello chunked world"


def test_request_headers_become_uppercase_http_keys_with_underscores(echo):
    environ = environ_of(echo, headers=[("X-Custom-Thing", "some value")])
    assert environ["HTTP_X_CUSTOM_THING"] == "some value"
    assert environ["HTTP_HOST"] == "localhost"


def test_repeated_headers_are_joined_with_a_comma(echo):
    environ = environ_of(echo, headers=[("X-Multi", "a"), ("X-Multi", "b"), ("X-Multi", "c")])
    assert environ["HTTP_X_MULTI"] == "a,b,c"


def test_repeated_cookie_headers_are_joined_with_semicolon_space(echo):
    environ = environ_of(echo, headers=[("Cookie", "a=1"), ("Cookie", "b=2")])
    assert environ["HTTP_COOKIE"] == "a=1; b=2"


def test_header_names_with_an_underscore_are_dropped(echo):
    environ = environ_of(echo, headers=[("X_Auth_User", "mallory")])
    assert "HTTP_X_AUTH_USER" not in environ
    assert "mallory" not in [value for value in environ.values() if isinstance(value, str)]


def test_underscore_header_cannot_spoof_the_dashed_header(echo):
    environ = environ_of(echo, headers=[("X-Auth-User", "alice"), ("X_Auth_User", "mallory")])
    assert environ["HTTP_X_AUTH_USER"] == "alice"


def test_header_values_are_latin1_decoded_native_strings(echo):
    environ = environ_of(echo, headers=[("X-Latin", b"caf\xc3\xa9 \xff")])
    assert environ["HTTP_X_LATIN"] == "caf\xc3\xa9 \xff"


# --- SCRIPT_NAME and --root-path ----------------------------------------------------------


def test_script_name_is_empty_by_default(echo):
    environ = environ_of(echo, target="/app/x")
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/app/x"


def test_root_path_becomes_script_name_and_is_removed_from_path_info(rooted):
    environ = environ_of(rooted, target="/app/x/y?z=1")
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == "/x/y"


def test_request_for_exactly_the_root_path_has_empty_path_info(rooted):
    environ = environ_of(rooted, target="/app")
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == ""


def test_path_info_is_unchanged_when_the_target_lacks_the_root_path(rooted):
    assert environ_of(rooted, target="/other/x")["PATH_INFO"] == "/other/x"


# --- protocol, addresses, process environment ---------------------------------------------


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_server_protocol_is_the_request_version(echo, version):
    assert environ_of(echo, version=version)["SERVER_PROTOCOL"] == version


def test_remote_addr_and_remote_port_are_the_client_socket(echo):
    with connect(echo.addr, timeout=10) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(build())
        resp = Reader(sock).response()
    data = resp.json()
    assert data["environ"]["REMOTE_ADDR"] == "127.0.0.1"
    assert data["environ"]["REMOTE_PORT"] == str(client_port)
    assert data["types"]["REMOTE_PORT"] == "str"


@pytest.mark.parametrize("source", ["127.0.0.9", "127.10.200.3", "127.255.1.64"])
def test_remote_addr_is_the_dotted_quad_of_any_loopback_source(echo, source):
    # REMOTE_ADDR is written digit by digit (no fmt): octets of one, two and three digits.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(echo.addr)
        sock.sendall(build())
        environ = Reader(sock).response().json()["environ"]
    assert environ["REMOTE_ADDR"] == source


def test_a_unix_socket_peer_has_an_empty_remote_addr_and_no_remote_port(tmp_path):
    # Every request's keys start as placeholders in a template dict; the unix-socket case
    # removes REMOTE_PORT again. No value may be left over from the template (None).
    path = str(tmp_path / "echo.sock")
    server = Server([*WIZGY, "--bind", f"unix:{path}", "--threads", "2", "echo:app"], APPS)
    try:
        server.wait_ready()
        for _ in range(2):  # the second request: a fresh copy of the template again
            data = echo_json_at(path, headers=[("Host", "example.org:8080")])
            environ, types = data["environ"], data["types"]
            assert environ["REMOTE_ADDR"] == ""
            assert "REMOTE_PORT" not in environ
            assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.org", "8080")
            assert "NoneType" not in types.values(), types
    finally:
        server.stop()


def echo_json_at(addr, *args, **kwargs) -> dict:
    resp = exchange(addr, build(*args, **kwargs))
    assert resp.status == 200, (resp.status, resp.body[:500])
    return resp.json()


def test_no_environ_value_is_none_for_a_tcp_peer(echo):
    types = echo_json(echo, "GET", "/p", headers=[("X-A", "1")])["types"]
    assert "NoneType" not in types.values(), types


def test_server_name_and_server_port_identify_the_listener(echo):
    environ = environ_of(echo, headers=[("Host", f"127.0.0.1:{echo.port}")])
    assert environ["SERVER_PORT"] == str(echo.port)
    assert environ["SERVER_NAME"] in ("127.0.0.1", "localhost")


def test_os_environ_does_not_leak_into_the_wsgi_environ(serve):
    # a variable wizgy itself reads (an unknown WIZGY_* one is refused at start)
    server = serve("echo:app", "--threads", "2", env={"WIZGY_LOG_LEVEL": "info"})
    environ = environ_of(server)
    assert "WIZGY_LOG_LEVEL" not in environ
    assert "PATH" not in environ
    assert "HOME" not in environ
    strays = [
        key
        for key in environ
        if key not in CGI_KEYS
        and not key.startswith("HTTP_")
        and not ("." in key and key.split(".")[0] == key.split(".")[0].lower())
    ]
    assert strays == []
    leaked = ((set(os.environ) | {"WIZGY_LOG_LEVEL"}) & set(environ)) - CGI_KEYS
    assert leaked == set()
