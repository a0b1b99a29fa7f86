"""Writes the request corpus: ``invalid/NAME.http`` + ``NAME.expect`` and ``valid/...``.

The ``.http`` files hold the exact request bytes (CR, LF, NUL and 0x80-0xFF exactly as written
here); the ``.expect`` files are small JSON objects. The vectors are written by hand for wizgy's
rules (issue #3, "hostile traffic"); run ``python tests/corpus/build_corpus.py`` after editing
this file and commit the regenerated files (``tests/corpus/** -text`` in .gitattributes keeps git
from touching their line endings). ``{P}`` in a vector is replaced by its unique path:
``/inv-NAME`` for invalid vectors (so the test can check the app never saw it) and ``/ok-NAME``
for valid ones.

Expect files:
- invalid: ``{"status": N, "rule": "..."}``, plus ``"app_may_run": true`` for chunked-body
  framing errors, which the server may only find while the app reads ``wsgi.input`` (issue #3:
  "A chunked-body framing error detected while the app reads -> 400").
- valid: ``{"environ": {KEY: str}, "body": latin-1 str, "rule": "..."}``, plus optionally
  ``"absent": [KEY, ...]`` (environ keys that must not exist).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent
H = b"Host: example.com"

INVALID: dict[str, tuple[bytes, dict]] = {}
VALID: dict[str, tuple[bytes, dict]] = {}


def inv(name: str, status: int, rule: str, data: bytes, app_may_run: bool = False) -> None:
    assert name not in INVALID, name
    expect: dict = {"status": status, "rule": rule}
    if app_may_run:
        expect["app_may_run"] = True
    INVALID[name] = (data.replace(b"{P}", b"/inv-" + name.encode()), expect)


def ok(name, rule, data, environ=None, body=b"", absent=()) -> None:
    assert name not in VALID, name
    path = "/ok-" + name
    env = {k: v.replace("{P}", path) for k, v in (environ or {}).items()}
    expect: dict = {"environ": env, "body": body.decode("latin-1"), "rule": rule}
    if absent:
        expect["absent"] = list(absent)
    VALID[name] = (data.replace(b"{P}", path.encode()), expect)


def get(*fields: bytes, target: bytes = b"{P}", method: bytes = b"GET", version=b"HTTP/1.1"):
    """A request head: the request line, then each field line (CRLF added), then CRLF."""
    head = method + b" " + target + b" " + version + b"\r\n"
    return head + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def chunked(body: bytes, *fields: bytes) -> bytes:
    return get(b"Host: example.com", b"Transfer-Encoding: chunked", *fields, method=b"POST") + body


def with_cl(body: bytes, *fields: bytes, cl: bytes = b"") -> bytes:
    cl = cl or str(len(body)).encode()
    return get(b"Host: example.com", b"Content-Length: " + cl, *fields, method=b"POST") + body


# ============================================================================================
# INVALID
# ============================================================================================

# --- line endings: CRLF only (RFC 9112 section 2.2; request smuggling via bare LF / bare CR) ----
BARE = "bare LF/CR is not a line terminator: 400 (RFC 9112 2.2)"
inv(
    "lf-request-line",
    400,
    "bare LF ends the request line; " + BARE,
    b"GET {P} HTTP/1.1\nHost: example.com\r\n\r\n",
)
inv(
    "lf-header-line",
    400,
    "bare LF ends a header line; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\nX-A: b\r\n\r\n",
)
inv(
    "lf-blank-line",
    400,
    "bare LF as the final empty line; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\n\n",
)
inv(
    "lf-before-blank-line",
    400,
    "bare LF ends the last header line before the CRLF blank line; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\n\r\n",
)
inv(
    "lf-everywhere",
    400,
    "a head using bare LF throughout (no CR at all); " + BARE,
    b"GET {P} HTTP/1.1\nHost: example.com\n\n",
)
inv(
    "lf-inside-header-value",
    400,
    "bare LF inside a header value (header injection); " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\nX-A: one\ntwo\r\n\r\n",
)
inv(
    "lf-as-separator",
    400,
    "bare LF between method and target; " + BARE,
    b"GET\n{P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "lf-cr-reversed",
    400,
    "LF CR instead of CR LF after the request line; " + BARE,
    b"GET {P} HTTP/1.1\n\r\nHost: example.com\r\n\r\n",
)
inv(
    "lf-leading-empty-line",
    400,
    "a bare LF empty line before the request line; " + BARE,
    b"\nGET {P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "cr-request-line",
    400,
    "bare CR ends the request line; " + BARE,
    b"GET {P} HTTP/1.1\rHost: example.com\r\n\r\n",
)
inv(
    "cr-header-line",
    400,
    "bare CR ends a header line; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\rX-A: b\r\n\r\n",
)
inv(
    "cr-inside-header-value",
    400,
    "bare CR inside a header value; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\nX-A: one\rtwo\r\n\r\n",
)
inv(
    "cr-in-target",
    400,
    "bare CR inside the request target; " + BARE,
    b"GET {P}\rx HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "cr-as-separator",
    400,
    "bare CR between method and target; " + BARE,
    b"GET\r{P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "cr-before-crlf",
    400,
    "CR CR LF at the end of a header line; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\r\n\r\n",
)
inv(
    "cr-blank-line",
    400,
    "the final empty line is CR CR LF; " + BARE,
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\n\r\r\n",
)
inv(
    "cr-leading-empty-line",
    400,
    "a bare CR before the request line; " + BARE,
    b"\rGET {P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "leading-crlf-over-64-bytes",
    400,
    "66 bytes of empty lines before the request line: only up to 64 bytes are tolerated",
    b"\r\n" * 33 + b"GET {P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)

# --- NUL ----------------------------------------------------------------------------------------
NUL = "NUL anywhere in the head: 400"
inv(
    "nul-in-target",
    400,
    NUL + " (in the request target)",
    b"GET {P}\x00x HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "nul-in-method",
    400,
    NUL + " (in the method)",
    b"GE\x00T {P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "nul-before-request-line",
    400,
    NUL + " (first byte of the connection)",
    b"\x00GET {P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "nul-in-header-name",
    400,
    NUL + " (in a field name)",
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\nX-\x00A: b\r\n\r\n",
)
inv(
    "nul-in-header-value",
    400,
    NUL + " (in a field value; RFC 9110 5.5)",
    b"GET {P} HTTP/1.1\r\nHost: example.com\r\nX-A: b\x00c\r\n\r\n",
)
inv(
    "nul-in-version",
    400,
    NUL + " (in the version)",
    b"GET {P} HTTP/1.1\x00\r\nHost: example.com\r\n\r\n",
)

# --- method: a token without lowercase letters --------------------------------------------------
METHOD = "method must be a token (RFC 9110 9.1) with no lowercase letters: 400"
inv("method-lowercase", 400, METHOD + " (get)", get(H, method=b"get"))
inv("method-mixed-case", 400, METHOD + " (Get)", get(H, method=b"Get"))
inv(
    "method-colon-inside", 400, METHOD + " (BLA:RGH, ':' is not a tchar)", get(H, method=b"BLA:RGH")
)
inv("method-colon-trailing", 400, METHOD + " (GET:)", get(H, method=b"GET:"))
inv("method-non-ascii-utf8", 400, METHOD + " (UTF-8 E with acute)", get(H, method=b"G\xc3\x89T"))
inv("method-non-ascii-latin1", 400, METHOD + " (0xC9 byte)", get(H, method=b"G\xc9T"))
inv("method-slash", 400, METHOD + " ('/' is not a tchar)", get(H, method=b"GET/"))
inv("method-at-sign", 400, METHOD + " ('@')", get(H, method=b"GE@T"))
inv("method-quoted", 400, METHOD + " (DQUOTE)", get(H, method=b'"GET"'))
inv(
    "method-empty",
    400,
    METHOD + " (request line starts with SP)",
    b" GET {P} HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv("method-del", 400, METHOD + " (DEL 0x7F)", get(H, method=b"GET\x7f"))

# --- request-line shape -------------------------------------------------------------------------
LINE = "request-line = method SP request-target SP HTTP-version, single SPs (RFC 9112 3): 400"
inv("line-double-space-before-target", 400, LINE, b"GET  {P} HTTP/1.1\r\nHost: example.com\r\n\r\n")
inv(
    "line-double-space-before-version", 400, LINE, b"GET {P}  HTTP/1.1\r\nHost: example.com\r\n\r\n"
)
inv(
    "line-htab-separator",
    400,
    LINE + " (HTAB instead of SP)",
    b"GET\t{P}\tHTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "line-extra-token",
    400,
    LINE + " (a fourth word)",
    b"GET {P} HTTP/1.1 extra\r\nHost: example.com\r\n\r\n",
)
inv(
    "line-space-in-target",
    400,
    LINE + " (an unencoded SP inside the target)",
    b"GET {P} x HTTP/1.1\r\nHost: example.com\r\n\r\n",
)
inv(
    "line-missing-version",
    400,
    LINE + " (HTTP/0.9 style: no version)",
    b"GET {P}\r\nHost: example.com\r\n\r\n",
)
inv("line-method-only", 400, LINE + " (only a method)", b"GET\r\nHost: example.com\r\n\r\n")

# --- version ------------------------------------------------------------------------------------
VER = "version must be exactly HTTP/1.0 or HTTP/1.1 (RFC 9112 2.3)"
inv(
    "version-http-2-0",
    505,
    VER + "; a well-formed HTTP/2.0 is 505 Version Not Supported",
    get(H, version=b"HTTP/2.0"),
)
inv("version-http-3-0", 505, VER + "; a well-formed HTTP/3.0 is 505", get(H, version=b"HTTP/3.0"))
inv(
    "version-http-1-2",
    400,
    VER + "; HTTP/1.2 is refused with 400 (issue #3)",
    get(H, version=b"HTTP/1.2"),
)
inv("version-http-111", 400, VER + "; HTTP/111 is malformed: 400", get(H, version=b"HTTP/111"))
inv("version-ftp", 400, VER + "; FTP/1.1: 400", get(H, version=b"FTP/1.1"))
inv(
    "version-trailing-space",
    400,
    VER + "; 'HTTP/1.1 ' with a trailing space: 400",
    get(H, version=b"HTTP/1.1 "),
)
inv(
    "version-lowercase",
    400,
    VER + "; 'http/1.1' (the name is case-sensitive): 400",
    get(H, version=b"http/1.1"),
)
inv("version-no-minor", 400, VER + "; 'HTTP/1' is malformed: 400", get(H, version=b"HTTP/1"))
inv(
    "version-http-2-no-minor",
    400,
    VER + "; 'HTTP/2' is not a well-formed version: 400",
    get(H, version=b"HTTP/2"),
)
inv("version-three-parts", 400, VER + "; 'HTTP/1.1.1': 400", get(H, version=b"HTTP/1.1.1"))
inv("version-leading-zero", 400, VER + "; 'HTTP/01.1': 400", get(H, version=b"HTTP/01.1"))

# --- request target per method (RFC 9112 3.2) ---------------------------------------------------
TGT = "request-target form must fit the method (RFC 9112 3.2): 400"
inv(
    "target-relative",
    400,
    TGT + " ('inv/relative' is no form at all)",
    get(H, target=b"inv-target-relative/x"),
)
inv("target-star-with-get", 400, TGT + " ('*' only with OPTIONS)", get(H, target=b"*"))
inv(
    "target-star-suffix-options",
    400,
    TGT + " ('*x' with OPTIONS)",
    get(H, target=b"*x", method=b"OPTIONS"),
)
inv(
    "target-origin-with-connect",
    400,
    TGT + " (CONNECT needs authority-form host:port)",
    get(b"Host: example.com:443", method=b"CONNECT"),
)
inv(
    "target-absolute-with-connect",
    400,
    TGT + " (CONNECT with absolute-form)",
    get(b"Host: example.com", target=b"http://example.com{P}", method=b"CONNECT"),
)
inv(
    "target-connect-without-port",
    400,
    TGT + " (authority-form needs a port)",
    get(b"Host: example.com", target=b"example.com", method=b"CONNECT"),
)
inv(
    "target-authority-with-get",
    400,
    TGT + " (authority-form only with CONNECT)",
    get(b"Host: example.com:80", target=b"example.com:80"),
)
inv(
    "target-ftp-scheme",
    400,
    TGT + " (absolute-form only for http/https)",
    get(H, target=b"ftp://example.com{P}"),
)
inv("target-query-only", 400, TGT + " ('?q' is not origin-form)", get(H, target=b"?q=1"))
inv(
    "proxy-line-without-proxy-protocol",
    400,
    "a PROXY protocol v1 line when --proxy-protocol is off is an HTTP request line with a bad "
    "target: 400",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 4242 80\r\n" + get(H),
)

# --- field names and line folding (RFC 9112 5.1, 5.2) -------------------------------------------
inv(
    "space-before-colon",
    400,
    "whitespace between field name and colon: 400 (RFC 9112 5.1)",
    get(b"Host: example.com", b"X-A : b"),
)
inv(
    "space-before-colon-host",
    400,
    "'Host :' with whitespace before the colon: 400 "
    "(RFC 9112 5.1; a classic Host smuggling vector)",
    get(b"Host : example.com"),
)
inv(
    "tab-before-colon",
    400,
    "HTAB between field name and colon: 400 (RFC 9112 5.1)",
    get(b"Host: example.com", b"X-A\t: b"),
)
inv(
    "obs-fold-space",
    400,
    "obs-fold (continuation line starting with SP): 400 (RFC 9112 5.2)",
    get(b"Host: example.com", b"X-A: b", b" c"),
)
inv(
    "obs-fold-htab",
    400,
    "obs-fold (continuation line starting with HTAB): 400 (RFC 9112 5.2)",
    get(b"Host: example.com", b"X-A: b", b"\tc"),
)
inv(
    "obs-fold-before-first-header",
    400,
    "a line starting with whitespace right after the request line: 400 (RFC 9112 2.2)",
    get(b" Host: example.com", b"Host: example.com"),
)
inv(
    "obs-fold-of-content-length",
    400,
    "obs-fold continuing Content-Length: 400 (RFC 9112 5.2)",
    get(b"Host: example.com", b"Content-Length:", b" 5", method=b"POST") + b"hello",
)
inv(
    "name-non-token",
    400,
    "field name must be a token ('(' and ')'): 400 (RFC 9110 5.1)",
    get(b"Host: example.com", b"X(A): b"),
)
inv(
    "name-space-inside",
    400,
    "field name containing SP: 400 (RFC 9110 5.1)",
    get(b"Host: example.com", b"X A: b"),
)
inv(
    "name-empty",
    400,
    "empty field name (line starts with ':'): 400 (RFC 9110 5.1)",
    get(b"Host: example.com", b": b"),
)
inv(
    "name-no-colon",
    400,
    "a header line without a colon: 400 (RFC 9112 5)",
    get(b"Host: example.com", b"X-No-Colon"),
)
inv(
    "name-non-ascii",
    400,
    "field name with a 0xE9 byte: 400 (RFC 9110 5.1)",
    get(b"Host: example.com", b"X-\xe9: b"),
)
inv(
    "name-del",
    400,
    "field name with DEL: 400 (RFC 9110 5.1)",
    get(b"Host: example.com", b"X-\x7fA: b"),
)

# --- field values: no CTL except HTAB, no DEL (RFC 9110 5.5) ------------------------------------
CTL = "field value with a control character other than HTAB: 400 (RFC 9110 5.5)"
inv("value-ctl-0x01", 400, CTL + " (0x01)", get(H, b"X-A: a\x01b"))
inv("value-ctl-0x1f", 400, CTL + " (0x1F)", get(H, b"X-A: a\x1fb"))
inv("value-ctl-vt", 400, CTL + " (VT 0x0B)", get(H, b"X-A: a\x0bb"))
inv("value-ctl-ff", 400, CTL + " (FF 0x0C)", get(H, b"X-A: a\x0cb"))
inv(
    "value-ctl-esc",
    400,
    CTL + " (ESC 0x1B, terminal escape injection)",
    get(H, b"X-A: \x1b[31mred"),
)
inv("value-del", 400, "field value with DEL 0x7F: 400 (RFC 9110 5.5)", get(H, b"X-A: a\x7fb"))
inv("value-ctl-leading", 400, CTL + " (0x01 where OWS would be)", get(H, b"X-A:\x01b"))

# --- Host (RFC 9112 3.2, RFC 3986 3.2.2) --------------------------------------------------------
inv("host-missing-http11", 400, "HTTP/1.1 request without Host: 400 (RFC 9112 3.2)", get(b"X-A: b"))
inv(
    "host-missing-absolute-form",
    400,
    "HTTP/1.1 absolute-form request without Host is still 400 (RFC 9112 3.2)",
    get(b"X-A: b", target=b"http://example.com{P}"),
)
inv(
    "host-duplicate",
    400,
    "two Host fields with different values: 400 (RFC 9112 3.2)",
    get(b"Host: example.com", b"Host: evil.example"),
)
inv(
    "host-duplicate-same",
    400,
    "two identical Host fields: still 400 (RFC 9112 3.2)",
    get(b"Host: example.com", b"Host: example.com"),
)
inv(
    "host-duplicate-http10",
    400,
    "duplicate Host on HTTP/1.0: 400",
    get(b"Host: example.com", b"Host: evil.example", version=b"HTTP/1.0"),
)
inv(
    "host-list",
    400,
    "Host value that is a list 'a, b' (the SP is outside reg-name): 400",
    get(b"Host: example.com, evil.example"),
)
BADHOST = "Host value outside RFC 3986 reg-name / IP-literal / port: 400"
inv("host-space", 400, BADHOST + " (SP inside)", get(b"Host: exa mple.com"))
inv("host-slash", 400, BADHOST + " ('/')", get(b"Host: example.com/evil"))
inv("host-at-sign", 400, BADHOST + " ('@', userinfo)", get(b"Host: user@example.com"))
inv("host-question-mark", 400, BADHOST + " ('?')", get(b"Host: example.com?x"))
inv("host-hash", 400, BADHOST + " ('#')", get(b"Host: example.com#x"))
inv("host-backslash", 400, BADHOST + " (backslash)", get(b"Host: example.com\\evil"))
inv("host-non-ascii", 400, BADHOST + " (a 0xE4 byte)", get(b"Host: ex\xe4mple.com"))
inv("host-angle-bracket", 400, BADHOST + " ('<')", get(b"Host: exa<mple.com"))
inv(
    "host-duplicate-case",
    400,
    "Host and host (same field, different case): duplicate Host, 400 (RFC 9112 3.2)",
    get(b"Host: example.com", b"host: evil.example"),
)

# --- Content-Type --------------------------------------------------------------------------------
inv(
    "content-type-duplicate",
    400,
    "two Content-Type fields: 400",
    with_cl(b"", b"Content-Type: text/plain", b"Content-Type: application/json"),
)
inv(
    "content-type-duplicate-same",
    400,
    "two identical Content-Type fields: 400",
    with_cl(b"", b"Content-Type: text/plain", b"Content-Type: text/plain"),
)

# --- Content-Length: 1*DIGIT, <= 19 digits (RFC 9112 6.3; smuggling CVEs) -----------------------
CL = "Content-Length must be 1*DIGIT, at most 19 digits (RFC 9110 8.6): 400"
inv("cl-plus-sign", 400, CL + " ('+5')", with_cl(b"hello", cl=b"+5"))
inv("cl-minus-sign", 400, CL + " ('-5')", with_cl(b"hello", cl=b"-5"))
inv("cl-space-inside", 400, CL + " ('1 0')", with_cl(b"helloworld", cl=b"1 0"))
inv("cl-list-same", 400, CL + " ('5, 5' list form)", with_cl(b"hello", cl=b"5, 5"))
inv("cl-list-no-space", 400, CL + " ('5,5')", with_cl(b"hello", cl=b"5,5"))
inv("cl-hex", 400, CL + " ('0x5')", with_cl(b"hello", cl=b"0x5"))
inv("cl-trailing-letter", 400, CL + " ('5a')", with_cl(b"hello", cl=b"5a"))
inv("cl-decimal-point", 400, CL + " ('5.0')", with_cl(b"hello", cl=b"5.0"))
inv(
    "cl-empty",
    400,
    CL + " (empty value)",
    get(b"Host: example.com", b"Content-Length:", method=b"POST"),
)
inv("cl-nbsp", 400, CL + " (0xA0 is not OWS)", with_cl(b"hello", cl=b"\xa05"))
inv(
    "cl-non-ascii-digit",
    400,
    CL + " (UTF-8 fullwidth digit five)",
    with_cl(b"hello", cl=b"\xef\xbc\x95"),
)
inv(
    "cl-20-digits",
    400,
    CL + " (20 digits even though the value is 5)",
    with_cl(b"hello", cl=b"00000000000000000005"),
)
inv(
    "cl-u64-overflow",
    400,
    CL + " (18446744073709551616 = 2**64)",
    with_cl(b"hello", cl=b"18446744073709551616"),
)
inv(
    "cl-huge",
    400,
    CL + " (99999999999999999999999)",
    with_cl(b"hello", cl=b"99999999999999999999999"),
)
inv(
    "cl-duplicate-same",
    400,
    "two Content-Length fields, even identical: 400 (RFC 9112 6.3)",
    with_cl(b"hello", b"Content-Length: 5"),
)
inv(
    "cl-duplicate-different",
    400,
    "two Content-Length fields with different values: 400 (RFC 9112 6.3, smuggling)",
    with_cl(b"hello", b"Content-Length: 4"),
)
inv(
    "cl-duplicate-case",
    400,
    "Content-Length and content-length (same value): duplicate Content-Length, 400",
    with_cl(b"hello", b"content-length: 5"),
)
inv(
    "cl-over-max-request-body",
    413,
    "Content-Length above the default --max-request-body (1 GiB): 413 before the app runs",
    with_cl(b"", cl=b"1073741825"),
)

# --- Transfer-Encoding (RFC 9112 6.1, 6.3; CL.TE / TE.CL smuggling) -----------------------------
inv(
    "cl-then-te",
    400,
    "Content-Length and Transfer-Encoding together: 400 (RFC 9112 6.3, CL.TE smuggling)",
    get(b"Host: example.com", b"Content-Length: 5", b"Transfer-Encoding: chunked", method=b"POST")
    + b"5\r\nhello\r\n0\r\n\r\n",
)
inv(
    "te-then-cl",
    400,
    "Transfer-Encoding and Content-Length together: 400 (RFC 9112 6.3, TE.CL smuggling)",
    get(b"Host: example.com", b"Transfer-Encoding: chunked", b"Content-Length: 5", method=b"POST")
    + b"5\r\nhello\r\n0\r\n\r\n",
)
inv(
    "te-http10",
    400,
    "Transfer-Encoding on HTTP/1.0: 400 (RFC 9112 6.1)",
    get(b"Host: example.com", b"Transfer-Encoding: chunked", method=b"POST", version=b"HTTP/1.0")
    + b"5\r\nhello\r\n0\r\n\r\n",
)
inv(
    "te-chunked-twice-one-field",
    400,
    "'chunked, chunked': chunked must appear once: 400",
    get(b"Host: example.com", b"Transfer-Encoding: chunked, chunked", method=b"POST")
    + b"5\r\nhello\r\n0\r\n\r\n",
)
inv(
    "te-chunked-twice-two-fields",
    400,
    "two Transfer-Encoding: chunked fields: 400",
    get(
        b"Host: example.com",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: chunked",
        method=b"POST",
    )
    + b"5\r\nhello\r\n0\r\n\r\n",
)
UNK = "a transfer coding other than chunked: 501 Not Implemented (RFC 9112 6.1)"
inv(
    "te-gzip",
    501,
    UNK + " ('gzip')",
    get(b"Host: example.com", b"Transfer-Encoding: gzip", method=b"POST"),
)
inv(
    "te-gzip-chunked",
    501,
    UNK + " ('gzip, chunked')",
    get(b"Host: example.com", b"Transfer-Encoding: gzip, chunked", method=b"POST") + b"0\r\n\r\n",
)
inv(
    "te-chunked-gzip",
    501,
    UNK + " ('chunked, gzip')",
    get(b"Host: example.com", b"Transfer-Encoding: chunked, gzip", method=b"POST") + b"0\r\n\r\n",
)
inv(
    "te-identity",
    501,
    UNK + " ('identity', removed in RFC 7230)",
    get(b"Host: example.com", b"Transfer-Encoding: identity", method=b"POST"),
)
inv(
    "te-unknown",
    501,
    UNK + " ('foo')",
    get(b"Host: example.com", b"Transfer-Encoding: foo", method=b"POST"),
)
inv(
    "te-gzip-then-chunked-fields",
    501,
    UNK + " (two fields: 'gzip' then 'chunked')",
    get(
        b"Host: example.com",
        b"Transfer-Encoding: gzip",
        b"Transfer-Encoding: chunked",
        method=b"POST",
    )
    + b"0\r\n\r\n",
)

# --- chunk size (RFC 9112 7.1) -------------------------------------------------------------------
CS = "chunk-size must be 1*HEXDIG, at most 16 significant digits (RFC 9112 7.1): 400"
REST = b"\r\nhello\r\n0\r\n\r\n"
inv("chunk-size-0x-prefix", 400, CS + " ('0x5')", chunked(b"0x5" + REST), True)
inv("chunk-size-plus", 400, CS + " ('+5')", chunked(b"+5" + REST), True)
inv("chunk-size-minus", 400, CS + " ('-5')", chunked(b"-5" + REST), True)
inv("chunk-size-leading-space", 400, CS + " (' 5')", chunked(b" 5" + REST), True)
inv("chunk-size-trailing-space", 400, CS + " ('5 ', BWS not accepted)", chunked(b"5 " + REST), True)
inv("chunk-size-trailing-tab", 400, CS + " ('5\\t')", chunked(b"5\t" + REST), True)
inv("chunk-size-underscore", 400, CS + " ('0_5')", chunked(b"0_5" + REST), True)
inv("chunk-size-empty", 400, CS + " (empty size line)", chunked(REST), True)
inv("chunk-size-non-hex", 400, CS + " ('g')", chunked(b"g" + REST), True)
inv(
    "chunk-size-17-digits",
    400,
    CS + " (17 significant digits, overflows u64)",
    chunked(b"10000000000000005" + REST),
    True,
)
inv(
    "chunk-size-bare-lf",
    400,
    "chunk-size line ended by bare LF: 400 (RFC 9112 7.1)",
    chunked(b"5\nhello\r\n0\r\n\r\n"),
    True,
)
inv(
    "chunk-size-bare-cr",
    400,
    "chunk-size line ended by bare CR: 400 (RFC 9112 7.1)",
    chunked(b"5\rhello\r\n0\r\n\r\n"),
    True,
)
inv("chunk-size-nul", 400, CS + " (NUL after the digits)", chunked(b"5\x00" + REST), True)
inv(
    "chunk-last-bare-lf",
    400,
    "last-chunk line ended by bare LF: 400 (RFC 9112 7.1)",
    chunked(b"5\r\nhello\r\n0\n\r\n"),
    True,
)

# --- chunk extensions (RFC 9112 7.1.1) -----------------------------------------------------------
EXT = "chunk-ext must be ;name[=token|quoted-string] without whitespace: 400 (RFC 9112 7.1.1)"
inv("chunk-ext-space-before-semicolon", 400, EXT + " ('5 ;a=b')", chunked(b"5 ;a=b" + REST), True)
inv("chunk-ext-space-after-semicolon", 400, EXT + " ('5; a=b')", chunked(b"5; a=b" + REST), True)
inv("chunk-ext-space-around-equals", 400, EXT + " ('5;a = b')", chunked(b"5;a = b" + REST), True)
inv("chunk-ext-empty-name", 400, EXT + " ('5;=b')", chunked(b"5;=b" + REST), True)
inv("chunk-ext-empty-value", 400, EXT + " ('5;a=')", chunked(b"5;a=" + REST), True)
inv("chunk-ext-trailing-semicolon", 400, EXT + " ('5;')", chunked(b"5;" + REST), True)
inv("chunk-ext-unterminated-quote", 400, EXT + " ('5;a=\"x')", chunked(b'5;a="x' + REST), True)
inv("chunk-ext-junk-after-quote", 400, EXT + " ('5;a=\"x\"y')", chunked(b'5;a="x"y' + REST), True)
inv("chunk-ext-non-token-value", 400, EXT + " ('5;a=b@c')", chunked(b"5;a=b@c" + REST), True)
inv(
    "chunk-ext-ctl-in-quoted",
    400,
    EXT + " (0x01 inside the quoted string)",
    chunked(b'5;a="x\x01y"' + REST),
    True,
)
inv("chunk-ext-trailing-htab", 400, EXT + " ('5;a=b\\t')", chunked(b"5;a=b\t" + REST), True)
inv(
    "chunk-ext-escape-at-end",
    400,
    EXT + " (quoted string ends in a backslash-escaped quote: unterminated)",
    chunked(b'5;a="x\\"' + REST),
    True,
)

# --- chunk data must be followed by CRLF (RFC 9112 7.1) ------------------------------------------
DATA = "chunk-data not followed by CRLF: 400 (RFC 9112 7.1)"
inv(
    "chunk-data-missing-crlf",
    400,
    DATA + " (next size line glued to the data)",
    chunked(b"5\r\nhello0\r\n\r\n"),
    True,
)
inv(
    "chunk-data-too-long",
    400,
    DATA + " (7 data bytes for size 5)",
    chunked(b"5\r\nhelloXY\r\n0\r\n\r\n"),
    True,
)
inv(
    "chunk-data-bare-lf",
    400,
    DATA + " (bare LF after the data)",
    chunked(b"5\r\nhello\n0\r\n\r\n"),
    True,
)
inv(
    "chunk-data-bare-cr",
    400,
    DATA + " (bare CR after the data)",
    chunked(b"5\r\nhello\r0\r\n\r\n"),
    True,
)

# --- trailers (RFC 9110 6.5.1, RFC 9112 7.1.2) ---------------------------------------------------
TR = "forbidden field in the chunked trailer section: 400 (RFC 9110 6.5.1)"
inv(
    "trailer-content-length",
    400,
    TR + " (Content-Length)",
    chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
    True,
)
inv(
    "trailer-transfer-encoding",
    400,
    TR + " (Transfer-Encoding)",
    chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    True,
)
inv(
    "trailer-host",
    400,
    TR + " (Host)",
    chunked(b"5\r\nhello\r\n0\r\nHost: evil.example\r\n\r\n"),
    True,
)
inv(
    "trailer-trailer",
    400,
    TR + " (Trailer)",
    chunked(b"5\r\nhello\r\n0\r\nTrailer: X-A\r\n\r\n"),
    True,
)
inv(
    "trailer-no-colon",
    400,
    "a trailer line that is not a field: 400 (RFC 9112 7.1.2)",
    chunked(b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n"),
    True,
)
inv(
    "trailer-space-before-colon",
    400,
    "trailer field with whitespace before the colon: 400",
    chunked(b"5\r\nhello\r\n0\r\nX-A : b\r\n\r\n"),
    True,
)
inv(
    "trailer-bare-lf",
    400,
    "trailer field ended by bare LF: 400 (RFC 9112 2.2)",
    chunked(b"5\r\nhello\r\n0\r\nX-A: b\n\r\n"),
    True,
)
inv(
    "trailer-obs-fold",
    400,
    "obs-fold in the trailer section: 400 (RFC 9112 5.2)",
    chunked(b"5\r\nhello\r\n0\r\nX-A: b\r\n c\r\n\r\n"),
    True,
)

# --- Expect (RFC 9110 10.1.1) --------------------------------------------------------------------
inv(
    "expect-unknown",
    417,
    "an Expect other than 100-continue on HTTP/1.1: 417 (RFC 9110 10.1.1)",
    with_cl(b"", b"Expect: something-else"),
)
inv("expect-200-ok", 417, "Expect: 200-ok on HTTP/1.1: 417", with_cl(b"", b"Expect: 200-ok"))
inv(
    "expect-100-continue-suffix",
    417,
    "Expect: 100-continued (not 100-continue): 417",
    with_cl(b"", b"Expect: 100-continued"),
)

# --- limits at their defaults --------------------------------------------------------------------


_line = b"GET /inv-request-line-8191?pad="
_line += b"a" * (8191 - len(_line) - len(b" HTTP/1.1")) + b" HTTP/1.1"
assert len(_line) == 8191
inv(
    "request-line-8191",
    414,
    "request line of 8191 bytes (CRLF not counted) > --limit-request-line 8190: 414",
    _line + b"\r\nHost: example.com\r\n\r\n",
)
_start = b"GET /inv-request-line-unterminated-9000?pad="
inv(
    "request-line-unterminated-9000",
    414,
    "9000 bytes of request line with no CRLF yet: 414 while the line is still arriving",
    _start + b"a" * (9000 - len(_start)),
)
inv(
    "fields-101",
    431,
    "101 header fields > --limit-request-fields 100: 431 (RFC 6585 5)",
    get(b"Host: example.com", *(b"X-F%03d: %d" % (i, i) for i in range(100))),
)
_field = b"X-Big: " + b"v" * (8191 - 7)
assert len(_field) == 8191
inv(
    "field-8191",
    431,
    "a field line of 8191 bytes (CRLF not counted) > --limit-request-field-size 8190: 431",
    get(b"Host: example.com", _field),
)

# --- proxy headers from a trusted peer (127.0.0.1 is trusted by default) ------------------------
inv(
    "forwarded-proto-invalid",
    400,
    "X-Forwarded-Proto from a trusted peer with a value other than http/https: 400",
    get(H, b"X-Forwarded-Proto: gopher"),
)
inv(
    "forwarded-proto-ssl-disagree",
    400,
    "X-Forwarded-Proto: https and X-Forwarded-Ssl: off from a trusted peer disagree: 400",
    get(H, b"X-Forwarded-Proto: https", b"X-Forwarded-Ssl: off"),
)
inv(
    "forwarded-rfc7239-disagree",
    400,
    "Forwarded proto=http and X-Forwarded-Proto: https disagree: 400 (RFC 7239)",
    get(H, b"Forwarded: for=192.0.2.1;proto=http", b"X-Forwarded-Proto: https"),
)
inv(
    "forwarded-rfc7239-invalid-proto",
    400,
    "Forwarded: proto=gopher from a trusted peer (invalid proto value): 400 (RFC 7239)",
    get(H, b"Forwarded: for=192.0.2.1;proto=gopher"),
)


# ============================================================================================
# VALID
# ============================================================================================
BASIC = {"PATH_INFO": "{P}", "QUERY_STRING": ""}

# --- methods -------------------------------------------------------------------------------------
ok(
    "get-minimal",
    "the plainest HTTP/1.1 GET",
    get(H),
    {
        **BASIC,
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com",
        "RAW_URI": "{P}",
        "SCRIPT_NAME": "",
    },
    absent=["CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_CONTENT_LENGTH"],
)
ok(
    "method-blargh",
    "a method is any token without lowercase: '-BLARGH' (RFC 9110 9.1)",
    get(H, method=b"-BLARGH"),
    {**BASIC, "REQUEST_METHOD": "-BLARGH"},
)
ok(
    "method-m-search",
    "'M-SEARCH' (SSDP) is a valid method token",
    get(H, method=b"M-SEARCH"),
    {**BASIC, "REQUEST_METHOD": "M-SEARCH"},
)
ok(
    "method-all-tchars",
    "a method made of every tchar symbol and digits is a token",
    get(H, method=b"!#$%&'*+-.^_`|~09AZ"),
    {**BASIC, "REQUEST_METHOD": "!#$%&'*+-.^_`|~09AZ"},
)
ok(
    "method-options-star",
    "OPTIONS * (asterisk-form, RFC 9112 3.2.4)",
    get(H, target=b"*", method=b"OPTIONS"),
    {"REQUEST_METHOD": "OPTIONS", "RAW_URI": "*"},
)
ok(
    "method-options-path",
    "OPTIONS with an origin-form target",
    get(H, method=b"OPTIONS"),
    {**BASIC, "REQUEST_METHOD": "OPTIONS"},
)
ok(
    "method-post-body",
    "POST with a Content-Length body",
    with_cl(b"a=1&b=2", b"Content-Type: application/x-www-form-urlencoded"),
    {
        **BASIC,
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": "7",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
    },
    b"a=1&b=2",
    absent=["HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"],
)
ok(
    "method-put-body",
    "PUT with a body",
    get(H, b"Content-Length: 3", method=b"PUT") + b"put",
    {**BASIC, "REQUEST_METHOD": "PUT"},
    b"put",
)
ok(
    "method-delete",
    "DELETE without a body",
    get(H, method=b"DELETE"),
    {**BASIC, "REQUEST_METHOD": "DELETE"},
)
ok(
    "method-patch-body",
    "PATCH with a body",
    get(H, b"Content-Length: 5", method=b"PATCH") + b"patch",
    {**BASIC, "REQUEST_METHOD": "PATCH"},
    b"patch",
)
ok(
    "connect-authority",
    "CONNECT host:443 (authority-form) reaches the app (RFC 9112 3.2.3)",
    get(b"Host: example.com:443", target=b"example.com:443", method=b"CONNECT"),
    {"REQUEST_METHOD": "CONNECT"},
)

# --- targets -------------------------------------------------------------------------------------
ok(
    "absolute-http",
    "absolute-form http target: PATH_INFO/QUERY_STRING from it (RFC 9112 3.2.2)",
    get(H, target=b"http://example.com{P}?a=1"),
    {"PATH_INFO": "{P}", "QUERY_STRING": "a=1", "RAW_URI": "http://example.com{P}?a=1"},
)
ok(
    "absolute-https",
    "absolute-form https target",
    get(H, target=b"https://example.com{P}?b=2"),
    {"PATH_INFO": "{P}", "QUERY_STRING": "b=2"},
)
ok(
    "absolute-port",
    "absolute-form with a port",
    get(b"Host: example.com:8080", target=b"http://example.com:8080{P}"),
    {"PATH_INFO": "{P}", "QUERY_STRING": ""},
)
ok(
    "absolute-ipv6",
    "absolute-form with an IPv6 literal host and port",
    get(b"Host: [::1]:8080", target=b"http://[::1]:8080{P}?v=6"),
    {"PATH_INFO": "{P}", "QUERY_STRING": "v=6", "HTTP_HOST": "[::1]:8080"},
)
ok(
    "absolute-userinfo",
    "absolute-form with userinfo: the path is still taken from it",
    get(H, target=b"http://user:pw@example.com{P}"),
    {"PATH_INFO": "{P}", "QUERY_STRING": ""},
)
ok(
    "absolute-percent",
    "absolute-form path is percent-decoded too",
    get(H, target=b"http://example.com{P}/a%20b"),
    {"PATH_INFO": "{P}/a b"},
)
ok(
    "triple-slash",
    "'///x' is an origin-form path, not an authority",
    get(H, target=b"//{P}"),
    {"PATH_INFO": "//{P}", "RAW_URI": "//{P}"},
)
ok(
    "double-slash",
    "'//x' is an origin-form path (not network-path reference)",
    get(H, target=b"/{P}//y"),
    {"PATH_INFO": "/{P}//y"},
)
ok(
    "percent-space",
    "PATH_INFO is percent-decoded (%20)",
    get(H, target=b"{P}/a%20b"),
    {"PATH_INFO": "{P}/a b", "RAW_URI": "{P}/a%20b"},
)
ok(
    "percent-slash",
    "%2F decodes to '/' in PATH_INFO (PEP 3333)",
    get(H, target=b"{P}/a%2Fb"),
    {"PATH_INFO": "{P}/a/b"},
)
ok(
    "percent-utf8-upper",
    "%C3%A9 decodes to the bytes C3 A9, latin-1 str in PATH_INFO",
    get(H, target=b"{P}/caf%C3%A9"),
    {"PATH_INFO": "{P}/caf\u00c3\u00a9"},
)
ok(
    "percent-utf8-lower",
    "lowercase hex %c3%a9 decodes too",
    get(H, target=b"{P}/caf%c3%a9"),
    {"PATH_INFO": "{P}/caf\u00c3\u00a9"},
)
ok(
    "percent-percent",
    "%25 decodes to a literal '%'",
    get(H, target=b"{P}/100%25"),
    {"PATH_INFO": "{P}/100%"},
)
ok(
    "percent-question",
    "%3F decodes into PATH_INFO, the real '?' starts the query",
    get(H, target=b"{P}/a%3Fb?c=d"),
    {"PATH_INFO": "{P}/a?b", "QUERY_STRING": "c=d"},
)
ok(
    "percent-latin1-byte",
    "%FF decodes to the single byte 0xFF (latin-1 '\u00ff')",
    get(H, target=b"{P}/%FF"),
    {"PATH_INFO": "{P}/\u00ff"},
)
ok(
    "raw-utf8-path",
    "raw UTF-8 bytes in the path: PATH_INFO is latin-1 of the bytes",
    get(H, target=b"{P}/caf\xc3\xa9"),
    {"PATH_INFO": "{P}/caf\u00c3\u00a9"},
)
ok(
    "path-params",
    "';' parameters stay in PATH_INFO",
    get(H, target=b"{P};v=1/x"),
    {"PATH_INFO": "{P};v=1/x"},
)
ok(
    "query-raw",
    "QUERY_STRING is raw (no decoding of %20 or '+')",
    get(H, target=b"{P}?a=%20b&c=d+e&f=%2F"),
    {"PATH_INFO": "{P}", "QUERY_STRING": "a=%20b&c=d+e&f=%2F"},
)
ok(
    "query-raw-utf8",
    "raw UTF-8 bytes in the query: latin-1 str",
    get(H, target=b"{P}?q=caf\xc3\xa9"),
    {"QUERY_STRING": "q=caf\u00c3\u00a9"},
)
ok(
    "query-empty",
    "a bare '?' gives an empty QUERY_STRING",
    get(H, target=b"{P}?"),
    {"PATH_INFO": "{P}", "QUERY_STRING": ""},
)
ok(
    "query-second-question-mark",
    "only the first '?' splits; the rest is query",
    get(H, target=b"{P}?a?b=c/d"),
    {"PATH_INFO": "{P}", "QUERY_STRING": "a?b=c/d"},
)
ok(
    "fragment-dropped",
    "a fragment is dropped from PATH_INFO and QUERY_STRING",
    get(H, target=b"{P}?q=1#frag"),
    {"PATH_INFO": "{P}", "QUERY_STRING": "q=1"},
)
ok(
    "fragment-dropped-no-query",
    "a fragment without a query is dropped",
    get(H, target=b"{P}#frag"),
    {"PATH_INFO": "{P}", "QUERY_STRING": ""},
)

# --- line handling -------------------------------------------------------------------------------
ok(
    "leading-crlf",
    "one empty line (CRLF) before the request line is tolerated (RFC 9112 2.2)",
    b"\r\n" + get(H),
    BASIC,
)
ok(
    "leading-crlf-64-bytes",
    "64 bytes of CRLF before the request line are tolerated",
    b"\r\n" * 32 + get(H),
    BASIC,
)

# --- field values --------------------------------------------------------------------------------
ok(
    "ows-space",
    "leading/trailing SP around a value is trimmed (RFC 9110 5.5)",
    get(H, b"X-Ows:    v a l   "),
    {"HTTP_X_OWS": "v a l"},
)
ok(
    "ows-htab",
    "leading/trailing HTAB around a value is trimmed",
    get(H, b"X-Ows:\t\tv\t"),
    {"HTTP_X_OWS": "v"},
)
ok(
    "ows-mixed",
    "mixed SP/HTAB OWS is trimmed, inner whitespace kept",
    get(H, b"X-Ows: \t a \t b \t "),
    {"HTTP_X_OWS": "a \t b"},
)
ok(
    "ows-nbsp-not-trimmed",
    "0xA0 (NBSP) is not OWS and stays in the value",
    get(H, b"X-Nbsp: \xa0v\xa0 "),
    {"HTTP_X_NBSP": "\u00a0v\u00a0"},
)
ok(
    "no-space-after-colon",
    "'X-Tight:v' (no OWS) is fine",
    get(H, b"X-Tight:v"),
    {"HTTP_X_TIGHT": "v"},
)
ok(
    "value-htab-inside",
    "HTAB inside a value is allowed",
    get(H, b"X-Tab: a\tb"),
    {"HTTP_X_TAB": "a\tb"},
)
ok("value-empty", "an empty field value", get(H, b"X-Empty:"), {"HTTP_X_EMPTY": ""})
ok(
    "value-whitespace-only",
    "a value of only OWS becomes empty",
    get(H, b"X-Empty: \t "),
    {"HTTP_X_EMPTY": ""},
)
ok(
    "value-colons",
    "colons after the first belong to the value",
    get(H, b"X-Colon: a:b::c"),
    {"HTTP_X_COLON": "a:b::c"},
)
ok(
    "value-obs-text",
    "obs-text 0x80-0xFF in a value arrives as latin-1 (RFC 9110 5.5)",
    get(H, b"X-Obs: caf\xe9 \x80\xff"),
    {"HTTP_X_OBS": "caf\u00e9 \u0080\u00ff"},
)
ok(
    "value-utf8",
    "UTF-8 bytes in a value arrive as latin-1 of the bytes",
    get(H, b"X-Utf8: caf\xc3\xa9"),
    {"HTTP_X_UTF8": "caf\u00c3\u00a9"},
)
ok("value-long-4k", "a 4 KiB value", get(H, b"X-Long: " + b"L" * 4096), {"HTTP_X_LONG": "L" * 4096})
ok(
    "repeated-header-joined",
    "repeated fields are joined with ','",
    get(H, b"X-Rep: a", b"X-Rep: b"),
    {"HTTP_X_REP": "a,b"},
)
ok(
    "repeated-header-three",
    "three repeated fields, in order",
    get(H, b"X-Rep: a", b"X-Other: o", b"X-Rep: b c", b"x-rep: d"),
    {"HTTP_X_REP": "a,b c,d", "HTTP_X_OTHER": "o"},
)
ok(
    "cookie-joined",
    "repeated Cookie fields are joined with '; ' (RFC 6265 5.4)",
    get(H, b"Cookie: a=1", b"Cookie: b=2"),
    {"HTTP_COOKIE": "a=1; b=2"},
)
ok(
    "underscore-dropped",
    "a field name with '_' is dropped (no HTTP_X_UNDER)",
    get(H, b"X_Under: evil"),
    BASIC,
    absent=["HTTP_X_UNDER"],
)
ok(
    "underscore-does-not-shadow",
    "'X_Dash' cannot override 'X-Dash' (both map to HTTP_X_DASH)",
    get(H, b"X_Dash: evil", b"X-Dash: good", b"X_Dash: evil2"),
    {"HTTP_X_DASH": "good"},
)
ok(
    "name-case-insensitive",
    "field names are case-insensitive (hOsT, cOnTeNt-TyPe)",
    get(b"hOsT: example.com", b"cOnTeNt-TyPe: text/x-corpus", b"x-LoWeR: v"),
    {"HTTP_HOST": "example.com", "CONTENT_TYPE": "text/x-corpus", "HTTP_X_LOWER": "v"},
)
ok(
    "name-all-tchars",
    "a field name made of every tchar symbol ('-' becomes '_')",
    get(H, b"!#$%&'*+-.^`|~: v"),
    {"HTTP_!#$%&'*+_.^`|~": "v"},
)

# --- Host ----------------------------------------------------------------------------------------
ok(
    "host-empty",
    "an empty Host value is allowed (RFC 9112 3.2)",
    get(b"Host:"),
    {**BASIC, "HTTP_HOST": ""},
)
ok(
    "host-port",
    "Host with a port",
    get(b"Host: example.com:8080"),
    {"HTTP_HOST": "example.com:8080"},
)
ok(
    "host-ipv6",
    "Host with an IPv6 literal and port",
    get(b"Host: [2001:db8::1]:8080"),
    {"HTTP_HOST": "[2001:db8::1]:8080"},
)
ok("host-ipv4", "Host with an IPv4 address", get(b"Host: 192.0.2.7"), {"HTTP_HOST": "192.0.2.7"})
ok(
    "host-reg-name-chars",
    "every RFC 3986 reg-name character class is accepted in Host",
    get(b"Host: a-b.c_d~e!$&'()*+,;=%41"),
    {"HTTP_HOST": "a-b.c_d~e!$&'()*+,;=%41"},
)
ok(
    "http10-no-host",
    "HTTP/1.0 without Host is fine",
    get(b"X-A: b", version=b"HTTP/1.0"),
    {**BASIC, "SERVER_PROTOCOL": "HTTP/1.0"},
    absent=["HTTP_HOST"],
)
ok(
    "http10-with-host",
    "HTTP/1.0 with Host",
    get(H, version=b"HTTP/1.0"),
    {**BASIC, "SERVER_PROTOCOL": "HTTP/1.0", "HTTP_HOST": "example.com"},
)
ok(
    "http10-post-body",
    "HTTP/1.0 POST with Content-Length",
    get(b"Content-Length: 4", method=b"POST", version=b"HTTP/1.0") + b"ten!",
    {"SERVER_PROTOCOL": "HTTP/1.0", "REQUEST_METHOD": "POST"},
    b"ten!",
)
ok(
    "http10-expect-ignored",
    "Expect is ignored on HTTP/1.0 (RFC 9110 10.1.1)",
    get(H, b"Expect: something-else", version=b"HTTP/1.0"),
    {**BASIC, "SERVER_PROTOCOL": "HTTP/1.0"},
)

# --- Expect: 100-continue ---------------------------------------------------------------------
ok(
    "expect-100-continue",
    "Expect: 100-continue with a body (the 100 may come first)",
    with_cl(b"hello", b"Expect: 100-continue"),
    BASIC,
    b"hello",
)
ok(
    "expect-100-continue-mixed-case",
    "the Expect value is case-insensitive (100-Continue)",
    with_cl(b"hello", b"Expect: 100-Continue"),
    BASIC,
    b"hello",
)

# --- Content-Length ------------------------------------------------------------------------------
ok(
    "cl-zero",
    "Content-Length: 0 POST",
    with_cl(b""),
    {**BASIC, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "0"},
)
ok(
    "cl-leading-zeros",
    "Content-Length '007' is 1*DIGIT (7 bytes)",
    with_cl(b"abcdefg", cl=b"007"),
    BASIC,
    b"abcdefg",
)
ok(
    "cl-19-digits",
    "a 19-digit Content-Length (leading zeros) is allowed",
    with_cl(b"hello", cl=b"0000000000000000005"),
    BASIC,
    b"hello",
)
ok(
    "cl-ows",
    "OWS around the Content-Length value is trimmed",
    get(H, b"Content-Length: \t 5 \t", method=b"POST") + b"hello",
    BASIC,
    b"hello",
)
ok(
    "body-binary",
    "a body with NUL, CR, LF and 0xFF bytes is delivered verbatim",
    with_cl(b"\x00\r\n\xff\r\x80\n"),
    BASIC,
    b"\x00\r\n\xff\r\x80\n",
)
ok(
    "body-looks-like-request",
    "body bytes are never parsed as a request",
    with_cl(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    BASIC,
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
)

# --- chunked -------------------------------------------------------------------------------------
ok(
    "chunked-basic",
    "two chunks; CONTENT_LENGTH absent for chunked (RFC 9112 7.1)",
    chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    BASIC,
    b"hello world",
    absent=["CONTENT_LENGTH"],
)
ok(
    "chunked-empty",
    "a chunked body with only the last chunk",
    chunked(b"0\r\n\r\n"),
    BASIC,
    absent=["CONTENT_LENGTH"],
)
ok(
    "chunked-uppercase-hex",
    "uppercase hex chunk sizes (A, 1F)",
    chunked(b"A\r\n0123456789\r\n1F\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n"),
    BASIC,
    b"0123456789" + b"x" * 31,
)
ok(
    "chunked-leading-zeros",
    "leading zeros in a chunk size ('000a')",
    chunked(b"000a\r\n0123456789\r\n0\r\n\r\n"),
    BASIC,
    b"0123456789",
)
ok(
    "chunked-many-leading-zeros",
    "20 hex digits with 1 significant digit are fine (<= 16 significant)",
    chunked(b"00000000000000000005\r\nhello\r\n00\r\n\r\n"),
    BASIC,
    b"hello",
)
ok(
    "chunked-ext-token",
    "chunk extension ;name=token",
    chunked(b"5;a=b\r\nhello\r\n0\r\n\r\n"),
    BASIC,
    b"hello",
)
ok(
    "chunked-ext-name-only",
    "chunk extension ;name without a value",
    chunked(b"5;flag\r\nhello\r\n0\r\n\r\n"),
    BASIC,
    b"hello",
)
ok(
    "chunked-ext-quoted",
    "chunk extension with a quoted-string value (SP inside the quotes)",
    chunked(b'5;a="x y;z=1"\r\nhello\r\n0\r\n\r\n'),
    BASIC,
    b"hello",
)
ok(
    "chunked-ext-escaped-quote",
    "quoted-string extension with an escaped DQUOTE and an escaped backslash",
    chunked(b'5;a="x\\"y\\\\"\r\nhello\r\n0\r\n\r\n'),
    BASIC,
    b"hello",
)
ok(
    "chunked-ext-multiple",
    "several extensions on one chunk",
    chunked(b'5;a=1;b="2";c\r\nhello\r\n0\r\n\r\n'),
    BASIC,
    b"hello",
)
ok(
    "chunked-ext-on-last-chunk",
    "an extension on the last chunk",
    chunked(b"5\r\nhello\r\n0;end=1\r\n\r\n"),
    BASIC,
    b"hello",
)
ok(
    "chunked-trailers-discarded",
    "trailer fields are discarded, never in environ (RFC 9112 7.1.2)",
    chunked(
        b"5\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Other-Trailer: u\r\n\r\n", b"Trailer: X-Trailer"
    ),
    BASIC,
    b"hello",
    absent=["HTTP_X_TRAILER", "HTTP_X_OTHER_TRAILER"],
)
ok(
    "chunked-data-contains-crlf",
    "chunk data containing CRLF and '0' lines is just data",
    chunked(b"9\r\n\r\n0\r\n\r\nXY\r\n0\r\n\r\n"),
    BASIC,
    b"\r\n0\r\n\r\nXY",
)
ok(
    "chunked-coding-case-insensitive",
    "'Chunked' matches chunked (coding names are case-insensitive, RFC 9112 7)",
    get(H, b"Transfer-Encoding: Chunked", method=b"POST") + b"5\r\nhello\r\n0\r\n\r\n",
    BASIC,
    b"hello",
)
ok(
    "chunked-te-ows",
    "OWS around the Transfer-Encoding value is trimmed",
    get(H, b"Transfer-Encoding: \t chunked \t", method=b"POST") + b"5\r\nhello\r\n0\r\n\r\n",
    BASIC,
    b"hello",
)
ok(
    "chunked-binary",
    "chunk data with NUL and 0xFF",
    chunked(b"4\r\n\x00\xff\r\n\r\n0\r\n\r\n"),
    BASIC,
    b"\x00\xff\r\n",
)

# --- misc ----------------------------------------------------------------------------------------
ok(
    "forwarded-proto-https",
    "X-Forwarded-Proto: https from trusted 127.0.0.1 sets url_scheme",
    get(H, b"X-Forwarded-Proto: https"),
    {"wsgi.url_scheme": "https", "HTTP_X_FORWARDED_PROTO": "https", "REMOTE_ADDR": "127.0.0.1"},
)
ok(
    "forwarded-rfc7239-proto",
    "Forwarded: proto=https sets url_scheme; REMOTE_ADDR unchanged without --forwarded-for",
    get(H, b"Forwarded: for=192.0.2.1;proto=https"),
    {"wsgi.url_scheme": "https", "REMOTE_ADDR": "127.0.0.1"},
)
ok(
    "forwarded-ssl-on",
    "X-Forwarded-Ssl: on from trusted 127.0.0.1 sets url_scheme https",
    get(H, b"X-Forwarded-Ssl: on"),
    {"wsgi.url_scheme": "https", "HTTP_X_FORWARDED_SSL": "on"},
)
ok(
    "forwarded-untouched-plain",
    "without proxy headers url_scheme is http and REMOTE_ADDR the peer",
    get(H),
    {"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"},
)
ok("connection-close", "Connection: close on the request", get(H, b"Connection: close"), BASIC)

# --- limits exactly at their defaults ------------------------------------------------------------
_line = b"GET /ok-request-line-8190?pad="
_pad = 8190 - len(_line) - len(b" HTTP/1.1")
_line += b"a" * _pad + b" HTTP/1.1"
assert len(_line) == 8190
ok(
    "request-line-8190",
    "a request line of exactly 8190 bytes (the default limit) is served",
    _line + b"\r\nHost: example.com\r\n\r\n",
    {"PATH_INFO": "{P}", "QUERY_STRING": "pad=" + "a" * _pad},
)
ok(
    "fields-100",
    "exactly 100 header fields (the default limit) are served",
    get(b"Host: example.com", *(b"X-F%03d: %d" % (i, i) for i in range(99))),
    {"HTTP_X_F000": "0", "HTTP_X_F098": "98"},
)
_field = b"X-Big: " + b"v" * (8190 - 7)
assert len(_field) == 8190
ok(
    "field-8190",
    "a field line of exactly 8190 bytes (the default limit) is served",
    get(b"Host: example.com", _field),
    {"HTTP_X_BIG": "v" * (8190 - 7)},
)


def write() -> None:
    for kind, vectors in (("invalid", INVALID), ("valid", VALID)):
        folder = HERE / kind
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for name, (data, expect) in sorted(vectors.items()):
            (folder / f"{name}.http").write_bytes(data)
            text = json.dumps(expect, indent=1, ensure_ascii=True, sort_keys=True) + "\n"
            (folder / f"{name}.expect").write_text(text, encoding="ascii")
    print(f"{len(INVALID)} invalid, {len(VALID)} valid")


if __name__ == "__main__":
    write()
