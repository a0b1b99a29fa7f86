"""Proxy support (issue #3): X-Forwarded-Proto / X-Forwarded-Ssl / Forwarded from trusted peers
(--forwarded-allow-ips), --forwarded-for, and the PROXY protocol v1/v2 (--proxy-protocol,
--proxy-allow-from).

The test client always connects from 127.0.0.1, which the defaults trust; the "untrusted" tests
trust only 10.0.0.0/8 instead.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from helpers import Reader, connect, request

ECHO = "echo:app"


def environ_for(server, headers: dict) -> dict:
    resp = request(server.addr, "GET", "/p", headers=headers)
    assert resp.status == 200, (resp.status, resp.body[:200])
    return resp.json()["environ"]


def connection_tokens(resp) -> set[str]:
    return {
        token.strip().lower()
        for value in resp.header_all("connection")
        for token in value.split(",")
        if token.strip()
    }


def exchange(addr, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool, float]:
    """Send ``data``, read until the server closes: (bytes, closed-by-server, seconds)."""
    with connect(addr, timeout) as sock:
        started = time.monotonic()
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b"", True, time.monotonic() - started
        out = b""
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                return out, True, time.monotonic() - started
            except socket.timeout:
                return out, False, time.monotonic() - started
            if not piece:
                return out, True, time.monotonic() - started
            out += piece


GET = b"GET /pp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
KEEP = b"GET /pp HTTP/1.1\r\nHost: localhost\r\n\r\n"


def proxied_environ(server, preamble: bytes) -> dict:
    with connect(server.addr, 10) as sock:
        sock.sendall(preamble + GET)
        resp = Reader(sock).response()
    assert resp.status == 200, (resp.status, resp.body[:200])
    return resp.json()["environ"]


# --- trusted peer (default --forwarded-allow-ips 127.0.0.1,::1) ----------------------------------


@pytest.mark.parametrize(
    "headers, scheme",
    [
        ({}, "http"),
        ({"X-Forwarded-Proto": "https"}, "https"),
        ({"X-Forwarded-Proto": "http"}, "http"),
        ({"X-Forwarded-Ssl": "on"}, "https"),
        ({"X-Forwarded-Ssl": "off"}, "http"),
        ({"Forwarded": "proto=https"}, "https"),
        ({"Forwarded": "for=192.0.2.60;proto=https;by=203.0.113.43"}, "https"),
        ({"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"}, "https"),
        ({"X-Forwarded-Proto": "https", "Forwarded": "proto=https"}, "https"),
    ],
    ids=[
        "none",
        "xfp-https",
        "xfp-http",
        "xfs-on",
        "xfs-off",
        "forwarded-proto",
        "forwarded-full",
        "xfp-and-xfs-agree",
        "xfp-and-forwarded-agree",
    ],
)
def test_trusted_proxy_headers_set_the_url_scheme(serve, headers, scheme):
    server = serve(ECHO, "--threads", "2")
    env = environ_for(server, headers)
    assert env["wsgi.url_scheme"] == scheme, env
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_trusted_proxy_headers_stay_visible_as_http_keys(serve):
    server = serve(ECHO, "--threads", "2")
    env = environ_for(
        server,
        {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on", "Forwarded": "proto=https"},
    )
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["HTTP_X_FORWARDED_SSL"] == "on"
    assert env["HTTP_FORWARDED"] == "proto=https"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"},
        {"X-Forwarded-Proto": "http", "X-Forwarded-Ssl": "on"},
        {"Forwarded": "proto=http", "X-Forwarded-Proto": "https"},
        {"Forwarded": "proto=https", "X-Forwarded-Ssl": "off"},
    ],
    ids=["xfp-https-xfs-off", "xfp-http-xfs-on", "forwarded-http-xfp-https", "fwd-https-xfs-off"],
)
def test_conflicting_trusted_proxy_headers_are_400(serve, headers):
    server = serve(ECHO, "--threads", "2")
    resp = request(server.addr, "GET", "/conflict", headers=headers)
    assert resp.status == 400, (resp.status, resp.body[:200])
    assert "close" in connection_tokens(resp)


@pytest.mark.parametrize(
    "headers",
    [{"X-Forwarded-Proto": "ftp"}, {"Forwarded": "proto=ftp"}],
    ids=["xfp-ftp", "forwarded-ftp"],
)
def test_an_invalid_proto_from_a_trusted_peer_is_400(serve, headers):
    server = serve(ECHO, "--threads", "2")
    resp = request(server.addr, "GET", "/ftp", headers=headers)
    assert resp.status == 400, (resp.status, resp.body[:200])
    assert "close" in connection_tokens(resp)
    assert request(server.addr, "GET", "/after").status == 200


# --- untrusted peer ------------------------------------------------------------------------------


UNTRUSTED_HEADERS = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Ssl": "on",
    "Forwarded": "for=192.0.2.60;proto=https",
    "X-Forwarded-For": "1.1.1.1, 2.2.2.2",
}


@pytest.mark.parametrize(
    "options, env",
    [
        (("--forwarded-allow-ips", "10.0.0.0/8"), None),
        (("--forwarded-allow-ips", "10.0.0.0/8", "--forwarded-for"), None),
        (("--forwarded-allow-ips", "10.1.2.3,::1"), None),
        ((), {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}),
    ],
    ids=["cidr", "cidr-with-forwarded-for", "list-without-127", "env-var"],
)
def test_untrusted_peer_headers_pass_through_and_change_nothing(serve, options, env):
    server = serve(ECHO, "--threads", "2", *options, env=env)
    resp = request(server.addr, "GET", "/untrusted", headers=UNTRUSTED_HEADERS)
    assert resp.status == 200, (resp.status, resp.body[:200])
    environ = resp.json()["environ"]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"].isdigit() and int(environ["REMOTE_PORT"]) > 0
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
    assert environ["HTTP_X_FORWARDED_SSL"] == "on"
    assert environ["HTTP_FORWARDED"] == "for=192.0.2.60;proto=https"
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1, 2.2.2.2"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"},
        {"Forwarded": "proto=http", "X-Forwarded-Proto": "https"},
        {"X-Forwarded-Proto": "ftp"},
    ],
    ids=["xfp-xfs-conflict", "forwarded-xfp-conflict", "xfp-ftp"],
)
def test_untrusted_conflicting_or_invalid_proxy_headers_are_not_400(serve, headers):
    server = serve(ECHO, "--threads", "2", "--forwarded-allow-ips", "10.0.0.0/8")
    env = environ_for(server, headers)
    assert env["wsgi.url_scheme"] == "http"
    for name, value in headers.items():
        assert env["HTTP_" + name.upper().replace("-", "_")] == value


@pytest.mark.parametrize(
    "value", ["*", "127.0.0.0/8", "127.0.0.1", "10.0.0.1,127.0.0.1"], ids=lambda v: v
)
def test_forwarded_allow_ips_forms_that_include_the_client_trust_it(serve, value):
    server = serve(ECHO, "--threads", "2", "--forwarded-allow-ips", value)
    assert environ_for(server, {"X-Forwarded-Proto": "https"})["wsgi.url_scheme"] == "https"


# --- --forwarded-for -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, addr",
    [
        ({"X-Forwarded-For": "1.1.1.1, 2.2.2.2"}, "2.2.2.2"),
        ({"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"),
        ({"Forwarded": 'for="[2001:db8::1]:4711"'}, "2001:db8::1"),
        ({"Forwarded": "for=192.0.2.60;proto=https"}, "192.0.2.60"),
        ({"Forwarded": "for=192.0.2.43, for=198.51.100.17"}, "198.51.100.17"),
    ],
    ids=["xff-rightmost", "xff-single", "forwarded-ipv6-port", "forwarded-proto", "fwd-last"],
)
def test_forwarded_for_sets_remote_addr_from_a_trusted_peer(serve, headers, addr):
    server = serve(ECHO, "--threads", "2", "--forwarded-for")
    env = environ_for(server, headers)
    assert env["REMOTE_ADDR"] == addr, env
    assert env["REMOTE_PORT"] == ""
    if "proto=https" in headers.get("Forwarded", ""):
        assert env["wsgi.url_scheme"] == "https"


def test_forwarded_for_with_star_trusts_every_peer(serve):
    server = serve(ECHO, "--threads", "2", "--forwarded-for", "--forwarded-allow-ips", "*")
    env = environ_for(server, {"X-Forwarded-For": "1.1.1.1, 2.2.2.2", "X-Forwarded-Proto": "https"})
    assert env["REMOTE_ADDR"] == "2.2.2.2"
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    "headers",
    [{"X-Forwarded-For": "1.1.1.1, 2.2.2.2"}, {"Forwarded": "for=192.0.2.60;proto=https"}],
    ids=["xff", "forwarded"],
)
def test_without_forwarded_for_remote_addr_stays_the_socket_peer(serve, headers):
    server = serve(ECHO, "--threads", "2")
    env = environ_for(server, headers)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit() and int(env["REMOTE_PORT"]) > 0


# --- PROXY protocol ------------------------------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(command: int, family: int, payload: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(payload)) + payload


def proxy_v2_tcp4(src: str, dst: str, sport: int, dport: int) -> bytes:
    payload = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return proxy_v2(0x1, 0x11, payload)


def proxy_v2_tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    payload = (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack("!HH", sport, dport)
    )
    return proxy_v2(0x1, 0x21, payload)


@pytest.mark.parametrize(
    "preamble, addr, port",
    [
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", "192.0.2.1", "56324"),
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 4242 443\r\n", "2001:db8::1", "4242"),
        (proxy_v2_tcp4("203.0.113.9", "198.51.100.2", 40000, 8443), "203.0.113.9", "40000"),
        (proxy_v2_tcp6("2001:db8::7", "2001:db8::8", 12345, 443), "2001:db8::7", "12345"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6"],
)
def test_proxy_protocol_header_sets_remote_addr_and_port(serve, preamble, addr, port):
    server = serve(ECHO, "--threads", "2", "--proxy-protocol")
    env = proxied_environ(server, preamble)
    assert env["REMOTE_ADDR"] == addr
    assert env["REMOTE_PORT"] == port


@pytest.mark.parametrize(
    "preamble",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", proxy_v2(0x0, 0x00, b"")],
    ids=["v1-unknown", "v1-unknown-with-addresses", "v2-local"],
)
def test_proxy_protocol_unknown_or_local_keeps_the_socket_peer(serve, preamble):
    server = serve(ECHO, "--threads", "2", "--proxy-protocol")
    env = proxied_environ(server, preamble)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit() and int(env["REMOTE_PORT"]) > 0


@pytest.mark.parametrize(
    "preamble",
    [
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n",
        proxy_v2_tcp4("192.0.2.1", "1.1.1.1", 56324, 80),
    ],
    ids=["v1", "v2"],
)
def test_proxy_protocol_address_holds_for_every_request_on_the_connection(serve, preamble):
    server = serve(ECHO, "--threads", "2", "--proxy-protocol")
    with connect(server.addr, 10) as sock:
        reader = Reader(sock)
        sock.sendall(preamble + KEEP)
        first = reader.response()
        sock.sendall(KEEP)  # no second PROXY header: it is per connection
        second = reader.response()
    for resp in (first, second):
        assert resp.status == 200, (resp.status, resp.body[:200])
        env = resp.json()["environ"]
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "56324")


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 1.2.3.4\r\n" + GET,
        GET,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n" + GET,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 80\n" + GET,
        b"PROXY TCP9 1.2.3.4 5.6.7.8 1 80\r\n" + GET,
        b"PROXY TCP4 2001:db8::1 5.6.7.8 1 80\r\n" + GET,
        V2_SIGNATURE + b"\x21\x11\x00\x04abcd" + GET,
    ],
    ids=[
        "v1-missing-fields",
        "no-header",
        "v1-port-out-of-range",
        "v1-bare-lf",
        "v1-bad-protocol",
        "v1-tcp4-with-ipv6",
        "v2-short-address-block",
    ],
)
def test_a_malformed_or_missing_proxy_header_closes_without_a_response(serve, data):
    server = serve(ECHO, "--threads", "2", "--proxy-protocol")
    out, closed, elapsed = exchange(server.addr, data, timeout=6.0)
    assert closed, f"connection still open after {elapsed:.1f} s"
    assert out == b"", f"expected no response bytes, got {out[:200]!r}"
    assert elapsed < 4.0
    assert server.proc.poll() is None
    assert proxied_environ(server, b"PROXY UNKNOWN\r\n")["REMOTE_ADDR"] == "127.0.0.1"


def test_peers_outside_proxy_allow_from_speak_plain_http(serve):
    server = serve(ECHO, "--threads", "2", "--proxy-protocol", "--proxy-allow-from", "10.0.0.0/8")
    env = environ_for(server, {})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    out, closed, _ = exchange(server.addr, b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" + GET)
    assert closed
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert b"192.0.2.1" not in out
