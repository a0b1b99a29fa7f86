"""TLS (issue 19): --certfile/--keyfile with RSA, ECDSA and Ed25519 keys, chains, encrypted
keys, client certificates (--ca-certs, --cert-reqs), mod_ssl's environ keys, every bad input
as one ``wizgy: error:`` line, hostile clients, SIGHUP rotation, and the plaintext features
(keep-alive, pipelining, chunked both ways, static files, wsgi.file_wrapper) over TLS.

Certificates are made at test time with ``cryptography``; clients are Python's ``ssl`` and
``curl``. Every server is on 127.0.0.1, port 0.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from conftest import run_wizgy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helpers import Reader
from proc_util import wait_new_worker, workers
from test_cli import assert_one_line_error

APP = "tls_app:app"
NOW = datetime.datetime.now(datetime.timezone.utc)
PASSWORD = b"correct horse"


# --- certificates -------------------------------------------------------------------------------


@dataclass
class Issued:
    cert: x509.Certificate
    key: object

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, fmt=serialization.PrivateFormat.PKCS8, password: Optional[bytes] = None):
        encryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def new_key(kind: str):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def issue(
    name: str,
    kind: str = "ecdsa",
    issuer: Optional[Issued] = None,
    ca: bool = False,
    client: bool = False,
    not_after: Optional[datetime.datetime] = None,
    serial: Optional[int] = None,
) -> Issued:
    key = new_key(kind)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wizgy tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(not_after or NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Python 3.13 verifies with VERIFY_X509_STRICT, which wants both key identifiers.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                (issuer.key if issuer else key).public_key()
            ),
            False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if not client:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
    signer = issuer.key if issuer else key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer, algorithm), key)


class Pki:
    """A root CA, an intermediate, server certificates of each key kind, and client CAs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = issue("wizgy test root", "ecdsa", ca=True)
        self.intermediate = issue("wizgy test intermediate", "ecdsa", self.root, ca=True)
        self.write("root.pem", self.root.cert_pem)
        self.client_ca = issue("wizgy client CA", "ecdsa", ca=True)
        self.write("client-ca.pem", self.client_ca.cert_pem)
        self.other_ca = issue("some other CA", "ecdsa", ca=True)
        self.alice = issue("alice", "ecdsa", self.client_ca, client=True)
        self.mallory = issue("mallory", "ecdsa", self.other_ca, client=True)
        self.write("alice.pem", self.alice.cert_pem)
        self.write("alice.key", self.alice.key_pem())
        self.write("mallory.pem", self.mallory.cert_pem)
        self.write("mallory.key", self.mallory.key_pem())

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def server(self, name: str, kind: str = "ecdsa", **kwargs) -> tuple[Path, Path, Issued]:
        """A leaf signed by the intermediate: (fullchain.pem, key.pem, the leaf)."""
        leaf = issue("localhost", kind, self.intermediate, **kwargs)
        chain = self.write(f"{name}.pem", leaf.cert_pem + self.intermediate.cert_pem)
        key = self.write(f"{name}.key", leaf.key_pem())
        return chain, key, leaf

    def path(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def ecdsa_files(pki) -> tuple[Path, Path, Issued]:
    return pki.server("ecdsa-server")


def client_context(
    pki: Pki, cert: Optional[str] = None, alpn: Optional[list[str]] = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.path("root.pem"))
    if cert:
        ctx.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}.key"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(server, ctx: ssl.SSLContext, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection(server.addr, timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def get(server, ctx: ssl.SSLContext, path: str = "/env", **kwargs) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPSConnection(*server.addr, context=ctx, timeout=10)
    try:
        conn.request(kwargs.pop("method", "GET"), path, **kwargs)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def environ_over(server, ctx: ssl.SSLContext) -> dict:
    status, body, _ = get(server, ctx, "/env")
    assert status == 200, body
    return json.loads(body)["environ"]


def serve_tls(serve, files, *options, **kwargs):
    chain, key, _ = files
    return serve(APP, "--certfile", str(chain), "--keyfile", str(key), *options, **kwargs)


# --- serving ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
def test_each_key_kind_serves_https_with_mod_ssl_environ(serve, pki, kind):
    files = pki.server(f"{kind}-server", kind)
    server = serve_tls(serve, files)
    assert server.scheme == "https", "the listening line says https://"
    ctx = client_context(pki)
    with tls_connect(server, ctx) as sock:
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        resp = Reader(sock).response()
        version, cipher = sock.version(), sock.cipher()[0]
    env = json.loads(resp.body)["environ"]
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == version == "TLSv1.3"
    assert env["SSL_CIPHER"] == cipher
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in env


def test_tls12_is_served_with_openssl_cipher_names(serve, pki):
    server = serve_tls(serve, pki.server("rsa12", "rsa"))
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_connect(server, ctx) as sock:
        cipher = sock.cipher()[0]
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: localhost\r\n\r\n")
        env = json.loads(Reader(sock).response().body)["environ"]
    assert env["SSL_PROTOCOL"] == "TLSv1.2"
    assert env["SSL_CIPHER"] == cipher
    assert cipher.startswith("ECDHE-RSA-"), cipher


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls10_and_tls11_are_refused(serve, pki, ecdsa_files, version):
    server = serve_tls(serve, pki.server(f"old-{version}", "rsa"))
    ctx = client_context(pki)
    # Let this client offer the old version (OpenSSL 3 refuses it by itself at level 1+).
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = getattr(ssl.TLSVersion, version)
    ctx.maximum_version = getattr(ssl.TLSVersion, version)
    with pytest.raises(ssl.SSLError) as refused:
        tls_connect(server, ctx).close()
    # An alert from the server (rustls: handshake_failure), not the client's own refusal
    # ("no protocols available").
    assert "alert" in str(refused.value).lower(), refused.value
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"


def test_the_chain_reaches_the_root_through_the_intermediate(serve, pki, tmp_path):
    server = serve_tls(serve, pki.server("chained"))
    assert environ_over(server, client_context(pki))["SSL_PROTOCOL"] == "TLSv1.3"
    # The same leaf without its intermediate cannot be verified by the client: the chain
    # above is what made it work.
    chain, key, leaf = pki.server("leaf-only")
    chain.write_bytes(leaf.cert_pem)
    bare = serve_tls(serve, (chain, key, leaf))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(bare, client_context(pki)).close()


def test_curl_gets_a_response_and_alpn_http11(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    out = subprocess.run(
        ["curl", "-sS", "-v", "--http1.1", "--cacert", pki.path("root.pem"), f"{server.url}/"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello"
    assert (
        "ALPN: server accepted http/1.1" in out.stderr
        or "ALPN, server accepted to use http/1.1" in out.stderr
    ), out.stderr
    old = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            pki.path("root.pem"),
            "--tlsv1.0",
            "--tls-max",
            "1.1",
            "--ciphers",
            "DEFAULT:@SECLEVEL=0",
            f"{server.url}/",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert old.returncode != 0, old.stdout


def test_alpn_picks_h2_then_http11_and_refuses_what_wizgy_does_not_speak(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    with pytest.raises(ssl.SSLError) as refused:
        tls_connect(server, client_context(pki, alpn=["spdy/3", "http/1.0"])).close()
    assert "no application protocol" in str(refused.value).lower(), refused.value
    with tls_connect(server, client_context(pki, alpn=["http/1.1", "h2"])) as sock:
        assert sock.selected_alpn_protocol() == "h2"  # the server's preference wins
    with tls_connect(server, client_context(pki, alpn=["http/1.1"])) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    # --http 1 offers HTTP/1.1 alone, as before HTTP/2 existed
    only1 = serve_tls(serve, ecdsa_files, "--http", "1")
    with pytest.raises(ssl.SSLError):
        tls_connect(only1, client_context(pki, alpn=["h2"])).close()
    with tls_connect(only1, client_context(pki, alpn=["h2", "http/1.1"])) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"


def test_an_encrypted_key_opens_with_its_password(serve, pki, tmp_path):
    chain, _, leaf = pki.server("encrypted")
    key = pki.write("encrypted.key", leaf.key_pem(password=PASSWORD))
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    server = serve(
        APP,
        "--certfile",
        str(chain),
        "--keyfile",
        str(key),
        "--keyfile-password",
        PASSWORD.decode(),
    )
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"
    from_env = serve(
        APP,
        "--certfile",
        str(chain),
        "--keyfile",
        str(key),
        env={"WIZGY_KEYFILE_PASSWORD": PASSWORD.decode()},
    )
    assert environ_over(from_env, client_context(pki))["HTTPS"] == "on"


@pytest.mark.parametrize(
    "fmt",
    [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8],
    ids=["pkcs1-and-sec1", "pkcs8"],
)
def test_pkcs1_sec1_and_pkcs8_keys_load(serve, pki, fmt):
    for kind in ("rsa", "ecdsa"):
        chain, key, leaf = pki.server(f"{kind}-{id(fmt)}", kind)
        key.write_bytes(leaf.key_pem(fmt))
        server = serve_tls(serve, (chain, key, leaf))
        assert environ_over(server, client_context(pki))["HTTPS"] == "on"
        server.stop()


def test_the_key_may_be_in_the_certfile(serve, pki):
    chain, key, leaf = pki.server("combined")
    combined = pki.write("combined-all.pem", chain.read_bytes() + key.read_bytes())
    server = serve(APP, "--certfile", str(combined))
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"


# --- client certificates -----------------------------------------------------------------------


def mtls(serve, pki, files, reqs: str):
    return serve_tls(serve, files, "--ca-certs", pki.path("client-ca.pem"), "--cert-reqs", reqs)


def test_required_client_certificate_is_verified_and_reported(serve, pki, ecdsa_files):
    server = mtls(serve, pki, ecdsa_files, "required")
    env = environ_over(server, client_context(pki, cert="alice"))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == pki.alice.cert.subject.rfc4514_string()
    assert env["SSL_CLIENT_I_DN"] == pki.client_ca.cert.subject.rfc4514_string()
    assert env["SSL_CLIENT_S_DN"] == "CN=alice,O=wizgy tests"
    assert env["SSL_CLIENT_CERT"] == pki.alice.cert_pem.decode()
    for who in (None, "mallory"):
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            get(server, client_context(pki, cert=who))
    # The worker still serves after the refusals.
    assert environ_over(server, client_context(pki, cert="alice"))["SSL_CLIENT_VERIFY"] == "SUCCESS"


def test_optional_client_certificate(serve, pki, ecdsa_files):
    server = mtls(serve, pki, ecdsa_files, "optional")
    assert environ_over(server, client_context(pki))["SSL_CLIENT_VERIFY"] == "NONE"
    env = environ_over(server, client_context(pki, cert="alice"))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == "CN=alice,O=wizgy tests"
    # A certificate from a CA not in --ca-certs is refused even when optional.
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        get(server, client_context(pki, cert="mallory"))


def test_cert_reqs_none_does_not_ask(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files, "--cert-reqs", "0")
    env = environ_over(server, client_context(pki, cert="alice"))
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_CERT" not in env


# --- bad input ---------------------------------------------------------------------------------


def test_every_bad_tls_input_is_one_error_line(pki, ecdsa_files, tmp_path):
    chain, key, _ = ecdsa_files
    other_chain, other_key, _ = pki.server("mismatch")
    _, enc_leaf_key, enc_leaf = pki.server("enc-bad")
    encrypted = pki.write("enc-bad.key", enc_leaf.key_pem(password=PASSWORD))
    garbage = pki.write(
        "garbage.pem", b"-----BEGIN CERTIFICATE-----\n!!!not base64\n-----END CERTIFICATE-----\n"
    )
    empty = pki.write("empty.pem", b"")
    cases = [
        (
            ["--certfile", str(tmp_path / "nope.pem"), "--keyfile", str(key)],
            ["--certfile", "nope.pem", "No such file"],
        ),
        (["--certfile", str(tmp_path), "--keyfile", str(key)], ["--certfile", "cannot read"]),
        (["--certfile", str(key), "--keyfile", str(key)], ["--certfile", "no certificate"]),
        (
            ["--certfile", str(empty), "--keyfile", str(key)],
            ["--certfile", "empty.pem", "no certificate"],
        ),
        (["--certfile", str(garbage), "--keyfile", str(key)], ["--certfile", "garbage.pem", "PEM"]),
        (["--certfile", str(chain), "--keyfile", str(chain)], ["--keyfile", "no private key"]),
        (["--certfile", str(chain)], ["--certfile", "no private key"]),
        (
            ["--certfile", str(chain), "--keyfile", str(tmp_path / "none.key")],
            ["--keyfile", "none.key", "No such file"],
        ),
        (
            ["--certfile", str(chain), "--keyfile", str(other_key)],
            ["--keyfile", "mismatch.key", "does not match", "ecdsa-server.pem"],
        ),
        (
            ["--certfile", str(enc_leaf_key.with_name("enc-bad.pem")), "--keyfile", str(encrypted)],
            ["--keyfile", "encrypted", "--keyfile-password"],
        ),
        (
            [
                "--certfile",
                str(enc_leaf_key.with_name("enc-bad.pem")),
                "--keyfile",
                str(encrypted),
                "--keyfile-password",
                "wrong",
            ],
            ["--keyfile", "wrong --keyfile-password"],
        ),
        (
            ["--certfile", str(chain), "--keyfile", str(key), "--cert-reqs", "required"],
            ["--cert-reqs", "--ca-certs"],
        ),
        (
            [
                "--certfile",
                str(chain),
                "--keyfile",
                str(key),
                "--ca-certs",
                str(empty),
                "--cert-reqs",
                "optional",
            ],
            ["--ca-certs", "empty.pem", "no certificate"],
        ),
        (["--keyfile", str(key)], ["--keyfile", "without --certfile"]),
    ]
    for options, names in cases:
        result = run_wizgy("--bind", "127.0.0.1:0", *options, APP, timeout=20)
        assert "listening on" not in result.stderr, (options, result.stderr)
        assert_one_line_error(result, *names)


def test_an_expired_certificate_is_a_warning(serve, pki):
    files = pki.server("expired", not_after=NOW - datetime.timedelta(hours=1))
    server = serve_tls(serve, files)
    assert "expired" in server.log() and "expired.pem" in server.log()
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(server, client_context(pki)).close()


# --- hostile clients ---------------------------------------------------------------------------


def read_until_closed(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    out = b""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            out += data
    except ConnectionResetError:
        pass
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_plain_http_and_garbage_to_the_tls_port_are_closed(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"
    (pid,) = workers(server)
    fds = open_fds(pid)
    for payload in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello" + os.urandom(200),
        b"\x17\x03\x03\x00\x64" + os.urandom(100),  # application data before any handshake
        os.urandom(512),
    ):
        with socket.create_connection(server.addr, timeout=5) as sock:
            sock.sendall(payload)
            out = read_until_closed(sock, 5)
        assert not out.startswith(b"HTTP/"), out[:40]
        # Nothing, or one TLS alert record (content type 21).
        assert out == b"" or out[0] == 0x15, out[:40]
    for _ in range(100):
        with socket.create_connection(server.addr, timeout=5) as sock:
            sock.sendall(os.urandom(64))
            read_until_closed(sock, 5)
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"
    assert workers(server) == {pid}, "the same worker serves"
    deadline = time.monotonic() + 5
    while open_fds(pid) > fds:
        assert time.monotonic() < deadline, "descriptors stayed behind"
        time.sleep(0.05)


def test_a_stalled_handshake_is_closed_within_the_header_timeout(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files, "--header-timeout", "1s", "--defer-accept", "0")
    with socket.create_connection(server.addr, timeout=5) as sock:
        # The start of a ClientHello record, and then nothing.
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")
        started = time.monotonic()
        out = read_until_closed(sock, 5)
        waited = time.monotonic() - started
    assert out == b"" or out[0] == 0x15
    assert 0.8 < waited < 3.0, waited
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"


# --- everything plaintext does --------------------------------------------------------------------


def test_keep_alive_and_pipelining_over_tls(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    with tls_connect(server, client_context(pki)) as sock:
        reader = Reader(sock)
        ports = []
        for _ in range(3):
            sock.sendall(b"GET /env HTTP/1.1\r\nHost: localhost\r\n\r\n")
            resp = reader.response()
            assert resp.status == 200
            ports.append(json.loads(resp.body)["environ"]["REMOTE_PORT"])
        assert len(set(ports)) == 1, "one connection"
        # Three requests in one write (one TLS record): three responses, in order.
        sock.sendall(
            b"".join(f"GET /p{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for i in range(3))
        )
        bodies = [reader.response().body for _ in range(3)]
    assert bodies == [b"hello"] * 3


def test_chunked_both_ways_over_tls(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    pieces = [b"x" * 5000, b"y" * 70000, b"z"]
    status, body, _ = get(
        server,
        client_context(pki),
        "/env",
        method="POST",
        body=iter(pieces),
        encode_chunked=True,
        headers={"Transfer-Encoding": "chunked"},
    )
    assert status == 200
    assert json.loads(body)["body"] == b"".join(pieces).decode()
    status, body, headers = get(server, client_context(pki), "/chunks")
    assert status == 200
    assert headers.get("Transfer-Encoding") == "chunked"
    assert body == b"".join(f"chunk {i}\n".encode() * 100 for i in range(50))


def test_static_files_and_file_wrapper_over_tls(serve, pki, ecdsa_files, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 12345)
    (static / "big.bin").write_bytes(data)
    server = serve_tls(serve, ecdsa_files, "--static", f"/s={static}")
    ctx = client_context(pki)
    status, body, headers = get(server, ctx, "/s/big.bin")
    assert status == 200 and headers["Content-Length"] == str(len(data))
    assert body == data
    status, body, _ = get(server, ctx, "/s/big.bin", headers={"Range": "bytes=100000-200000"})
    assert status == 206 and body == data[100000:200001]
    status, body, _ = get(server, ctx, f"/file?path={static / 'big.bin'}")
    assert status == 200 and body == data
    # On one connection, a file and then another request: the file left nothing behind.
    with tls_connect(server, ctx) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /s/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert reader.response().body == data
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert reader.response().body == b"hello"


def test_unix_sockets_stay_plaintext(serve, pki, ecdsa_files, tmp_path):
    path = tmp_path / "wizgy.sock"
    chain, key, _ = ecdsa_files
    server = serve(
        APP,
        "--certfile",
        str(chain),
        "--keyfile",
        str(key),
        "--bind",
        f"unix:{path}",
        bind="127.0.0.1:0",
    )
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: localhost\r\n\r\n")
        env = json.loads(Reader(sock).response().body)["environ"]
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env


def test_a_trusted_proxys_forwarded_proto_still_wins(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    status, body, _ = get(
        server, client_context(pki), "/env", headers={"X-Forwarded-Proto": "http"}
    )
    env = json.loads(body)["environ"]
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTPS"] == "on", "the connection itself is TLS"


# --- rotation ----------------------------------------------------------------------------------


def served_serial(server, pki) -> int:
    with tls_connect(server, client_context(pki)) as sock:
        der = sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def test_sighup_rotates_the_certificate_and_a_broken_one_keeps_the_old_workers(
    serve, pki, tmp_path
):
    live_chain, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    first = pki.server("rot-1", serial=1111)
    second = pki.server("rot-2", serial=2222)
    shutil.copy(first[0], live_chain)
    shutil.copy(first[1], live_key)
    server = serve(APP, "--certfile", str(live_chain), "--keyfile", str(live_key))
    assert served_serial(server, pki) == 1111
    shutil.copy(second[0], live_chain)
    shutil.copy(second[1], live_key)
    old = workers(server)
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_new_worker(server, old, timeout=10)
    deadline = time.monotonic() + 10
    while served_serial(server, pki) != 2222:
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.1)
    # A broken certificate at the next reload: the workers serving 2222 are kept.
    live_chain.write_bytes(b"not a certificate\n")
    os.kill(server.proc.pid, signal.SIGHUP)
    server.wait_for(r"keeping the old ones", 10)
    assert "wizgy: error: --certfile" in server.log()
    assert served_serial(server, pki) == 2222


# --- idle cost ---------------------------------------------------------------------------------

IDLE_TLS_HELD = 400
IDLE_TLS_KIB = 40.0  # issue 19's target per idle TLS connection


def worker_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def test_idle_tls_connections_cost_at_most_40_kib_each_and_leave_nothing(serve, pki, ecdsa_files):
    """Idle keep-alive TLS connections (handshake done, one request served) cost the worker at
    most IDLE_TLS_KIB of RSS each, and once closed give their descriptors back."""
    server = serve_tls(serve, ecdsa_files, "--keep-alive", "60s", "--threads", "4")
    ctx = client_context(pki)
    assert environ_over(server, ctx)["HTTPS"] == "on"  # warm up
    (pid,) = workers(server)
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    rss_before = worker_rss(pid)
    held: list[ssl.SSLSocket] = []
    try:
        for i in range(IDLE_TLS_HELD):
            sock = tls_connect(server, ctx)
            held.append(sock)
            sock.sendall(f"GET /idle-{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert Reader(sock).response().body == b"hello"
        time.sleep(0.5)  # past the 10 ms idle grace: buffers given back
        per_connection = (worker_rss(pid) - rss_before) / 1024 / IDLE_TLS_HELD
        assert len(os.listdir(f"/proc/{pid}/fd")) >= fds_before + IDLE_TLS_HELD - 10
    finally:
        for sock in held:
            sock.close()
    print(f"\n{IDLE_TLS_HELD} idle TLS connections: {per_connection:.1f} KiB of worker RSS each")
    assert per_connection <= IDLE_TLS_KIB, f"{per_connection:.1f} KiB per idle TLS connection"
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{pid}/fd")) > fds_before + 2:
        assert time.monotonic() < deadline, "descriptors stayed behind"
        time.sleep(0.1)


# --- more of the same path ---------------------------------------------------------------------


def test_a_proxy_header_before_the_handshake_sets_the_client_address(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files, "--proxy-protocol")
    raw = socket.create_connection(server.addr, timeout=10)
    raw.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n")
    with client_context(pki).wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: localhost\r\n\r\n")
        env = json.loads(Reader(sock).response().body)["environ"]
    assert env["REMOTE_ADDR"] == "192.0.2.7"
    assert env["REMOTE_PORT"] == "40000"
    assert env["HTTPS"] == "on"
    # Without the header a trusted peer is closed on, as over plaintext.
    with pytest.raises((ssl.SSLError, ConnectionError, socket.timeout)):
        tls_connect(server, client_context(pki), timeout=3).close()


def resumed(server, ctx: ssl.SSLContext, session) -> tuple[bool, object, int]:
    with ctx.wrap_socket(
        socket.create_connection(server.addr, timeout=10),
        server_hostname="localhost",
        session=session,
    ) as sock:
        # TLS 1.3 tickets come after the handshake: read a response so they have arrived.
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: localhost\r\n\r\n")
        pid = Reader(sock).response().json()["pid"]
        return sock.session_reused, sock.session, pid


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_sessions_resume_on_every_worker(serve, pki, ecdsa_files, version):
    """Ticket keys are made before the fork: a ticket from one worker resumes on the other."""
    # The worker that issued the ticket retires after 2 requests, so a later connection meets
    # another worker forked from the same supervisor. (Two workers side by side would leave it
    # to the kernel, which may hand every connection to the same one: seen in CI.)
    server = serve_tls(serve, ecdsa_files, "--workers", "1", "--max-requests", "2")
    ctx = client_context(pki)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    first_reused, session, first_pid = resumed(server, ctx, None)
    assert not first_reused
    pids = {first_pid}
    deadline = time.monotonic() + 10
    while len(pids) < 2 and time.monotonic() < deadline:
        reused, _, pid = resumed(server, ctx, session)
        assert reused, ("the session was not resumed", first_pid, pid)
        pids.add(pid)
        time.sleep(0.02)
    assert len(pids) == 2, "no other worker was met within 10 s"


def test_serve_from_python_speaks_tls(pki, ecdsa_files, tmp_path):
    from conftest import APPS, Server

    chain, key, _ = ecdsa_files
    code = (
        "import sys, wizgy; sys.path.insert(0, sys.argv[1]); from tls_app import app; "
        "wizgy.serve(app, bind='127.0.0.1:0', certfile=sys.argv[2], keyfile=sys.argv[3])"
    )
    server = Server([sys.executable, "-c", code, str(APPS), str(chain), str(key)], tmp_path)
    try:
        server.wait_ready()
        assert server.scheme == "https"
        assert environ_over(server, client_context(pki))["HTTPS"] == "on"
    finally:
        server.stop()


def test_a_renegotiation_attempt_does_not_hurt_the_worker(serve, pki, ecdsa_files):
    server = serve_tls(serve, ecdsa_files)
    before = workers(server)
    out = subprocess.run(
        ["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{server.port}",
         "-CAfile", pki.path("root.pem")],
        input=b"R\n",
        capture_output=True,
        timeout=20,
    )  # fmt: skip
    assert b"RENEGOTIATING" in out.stdout + out.stderr, out.stdout + out.stderr
    assert workers(server) == before
    assert environ_over(server, client_context(pki))["HTTPS"] == "on"
