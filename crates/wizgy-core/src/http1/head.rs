//! Request heads: strict line scanning, httparse tokenizing, then wizgy's own framing decision.
//!
//! Rule 1: every line ends in CRLF; a bare CR, a bare LF or a NUL anywhere in the head is a 400
//! (the waitress CVE-2019-16785 class), checked on the raw bytes before httparse sees them.
//! Rule 2: the body's length is decided here, once: exactly one well-formed Content-Length, or
//! Transfer-Encoding whose only coding is `chunked`, never both (RFC 9112 §6.1, §6.3).
//! This module does not read sockets and does not know WSGI.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::RequestError;

/// Size limits on a request head. Defaults follow gunicorn, whose numbers most deployments
/// (and the proxies in front of them) are already tuned for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line, without its CRLF. Default: 8190 (gunicorn's maximum is 8190).
    pub max_request_line: usize,
    /// Most header fields in one head. Default: 100 (gunicorn `limit_request_fields`).
    pub max_fields: usize,
    /// Longest header field line, without its CRLF. Default: 8190 (gunicorn).
    pub max_field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8190,
            max_fields: 100,
            max_field_size: 8190,
        }
    }
}

/// The HTTP version of a request: the HTTP/1 engine parses the first two, HTTP/2 streams
/// (see [`crate::http2`]) are the third.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

impl Version {
    /// As `SERVER_PROTOCOL` and the access log give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// The chunked transfer coding follows the head.
    Chunked,
}

/// One header field, as byte ranges into [`RequestHead::raw`].
#[derive(Debug, Clone)]
pub struct Field {
    name: Range<usize>,
    value: Range<usize>,
}

/// A parsed, validated request head. It owns the raw head bytes; accessors borrow from them.
#[derive(Debug, Clone)]
pub struct RequestHead {
    raw: Bytes,
    method: Range<usize>,
    target: Range<usize>,
    fields: Vec<Field>,
    /// The request's HTTP version.
    pub version: Version,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the client wants the connection kept after this exchange (version default,
    /// overridden by `Connection: close` / `keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

impl RequestHead {
    /// A head from parts another protocol decoded (an HTTP/2 stream's pseudo-headers and
    /// fields): the same bytes-and-ranges shape, so the exchange and the environ cannot tell
    /// the protocols apart. `fields` are stored as given, in order.
    pub fn assemble<'a>(
        method: &[u8],
        target: &[u8],
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        version: Version,
        framing: Framing,
    ) -> RequestHead {
        let mut raw = BytesMut::with_capacity(256);
        raw.extend_from_slice(method);
        let method_range = 0..raw.len();
        raw.extend_from_slice(target);
        let target_range = method_range.end..raw.len();
        let mut ranges = Vec::new();
        for (name, value) in fields {
            let name_start = raw.len();
            raw.extend_from_slice(name);
            let value_start = raw.len();
            raw.extend_from_slice(value);
            ranges.push(Field {
                name: name_start..value_start,
                value: value_start..raw.len(),
            });
        }
        RequestHead {
            raw: raw.freeze(),
            method: method_range,
            target: target_range,
            fields: ranges,
            version,
            framing,
            keep_alive: true,
            expect_continue: false,
        }
    }

    /// The method token, e.g. `b"GET"`.
    pub fn method(&self) -> &[u8] {
        &self.raw[self.method.clone()]
    }

    /// The request target exactly as sent (RAW_URI).
    pub fn target(&self) -> &[u8] {
        &self.raw[self.target.clone()]
    }

    /// Whether this is a HEAD request (its response carries no body).
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// Header fields in the order received, as `(name, value)`; values have OWS trimmed.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|f| (&self.raw[f.name.clone()], &self.raw[f.value.clone()]))
    }

    /// The first value of the field `name` (ASCII case-insensitive).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The target split into path and query (without `?`); a fragment is dropped. For the
    /// absolute form the scheme and authority are removed; `*` and the authority form give an
    /// empty path.
    pub fn path_and_query(&self) -> (&[u8], &[u8]) {
        let target = self.target();
        let target = match memchr::memchr(b'#', target) {
            Some(i) => &target[..i],
            None => target,
        };
        let rest = if target.first() == Some(&b'/') {
            target
        } else if let Some(after_scheme) = absolute_form_rest(target) {
            match memchr::memchr2(b'/', b'?', after_scheme) {
                Some(i) if after_scheme[i] == b'/' => &after_scheme[i..],
                Some(i) => &after_scheme[i..],
                None => b"",
            }
        } else {
            b""
        };
        match memchr::memchr(b'?', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, b""),
        }
    }
}

/// For an absolute-form target (`http://host/path`), the part after `scheme://`.
fn absolute_form_rest(target: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', target)?;
    let scheme = &target[..colon];
    let ok_scheme = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
    let rest = target[colon..].strip_prefix(b"://")?;
    (ok_scheme && !rest.is_empty() && rest[0] != b'/').then_some(rest)
}

/// Incremental head parser for one connection. Feed it the connection's read buffer after each
/// read; it remembers how far it has scanned, so a head dribbled in byte by byte costs O(n).
#[derive(Debug)]
pub struct HeadParser {
    limits: Limits,
    /// Bytes of the buffer already scanned for line ends.
    scanned: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Where the request line starts (after tolerated leading empty lines).
    head_start: usize,
    /// Whether the request line has been seen complete.
    seen_request_line: bool,
    /// Field lines seen so far.
    field_count: usize,
}

/// A blank line before the request line is tolerated (RFC 9112 §2.2), but only this many bytes.
const MAX_LEADING_EMPTY_LINES_BYTES: usize = 64;

impl HeadParser {
    pub fn new(limits: Limits) -> Self {
        HeadParser {
            limits,
            scanned: 0,
            line_start: 0,
            head_start: 0,
            seen_request_line: false,
            field_count: 0,
        }
    }

    /// Forget progress; call after a head was taken from the buffer.
    fn reset(&mut self) {
        *self = HeadParser::new(self.limits);
    }

    /// Tries to take one complete head from the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed; on `Ok(Some(head))` the head's bytes (and any
    /// leading blank lines) have been split off `buf`, leaving the body and what follows.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<RequestHead>, RequestError> {
        let Some(end) = self.scan(buf)? else {
            return Ok(None);
        };
        let head_start = self.head_start;
        let field_count = self.field_count;
        self.reset();
        let mut raw = buf.split_to(end);
        let raw = raw.split_off(head_start).freeze();
        parse_head(raw, field_count).map(Some)
    }

    /// Scans for the end of the head, enforcing the line rules and limits. Returns the index
    /// just past the final CRLF CRLF.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, RequestError> {
        while let Some(offset) = memchr::memchr3(b'\r', b'\n', 0, &buf[self.scanned..]) {
            let at = self.scanned + offset;
            // The line so far (without this CR, LF or NUL) must be within its limit first, as
            // it is when the same bytes arrive in pieces and the partial line is checked.
            self.check_partial_line(at)?;
            match buf[at] {
                0 => return Err(RequestError::BadRequest("NUL in request head")),
                b'\n' => return Err(RequestError::BadRequest("bare LF in request head")),
                _ => {}
            }
            // A CR: it must be followed by LF.
            match buf.get(at + 1) {
                None => {
                    self.scanned = at;
                    return self.check_partial_line(at);
                }
                Some(b'\n') => {}
                Some(_) => return Err(RequestError::BadRequest("bare CR in request head")),
            }
            let line_len = at - self.line_start;
            self.scanned = at + 2;
            if !self.seen_request_line {
                if line_len == 0 {
                    // A leading empty line: skip it, within a small bound.
                    self.line_start = at + 2;
                    self.head_start = at + 2;
                    if self.head_start > MAX_LEADING_EMPTY_LINES_BYTES {
                        return Err(RequestError::BadRequest("too many empty lines"));
                    }
                    continue;
                }
                if line_len > self.limits.max_request_line {
                    return Err(RequestError::UriTooLong);
                }
                self.seen_request_line = true;
            } else if line_len == 0 {
                return Ok(Some(at + 2));
            } else {
                if line_len > self.limits.max_field_size {
                    return Err(RequestError::HeaderFieldsTooLarge("field too long"));
                }
                self.field_count += 1;
                if self.field_count > self.limits.max_fields {
                    return Err(RequestError::HeaderFieldsTooLarge("too many fields"));
                }
            }
            self.line_start = at + 2;
        }
        self.scanned = buf.len();
        self.check_partial_line(buf.len())
    }

    /// Applies the line limits to the line still arriving, so an endless line is refused early.
    fn check_partial_line(&self, len: usize) -> Result<Option<usize>, RequestError> {
        let partial = len - self.line_start;
        if !self.seen_request_line {
            if partial > self.limits.max_request_line {
                return Err(RequestError::UriTooLong);
            }
        } else if partial > self.limits.max_field_size {
            return Err(RequestError::HeaderFieldsTooLarge("field too long"));
        }
        Ok(None)
    }
}

/// Offset of `part` inside `whole` (both from the same allocation; httparse returns sub-slices).
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// Heads with up to this many fields are tokenized without a heap allocation.
const FIELDS_ON_STACK: usize = 32;

/// Tokenizes a complete, line-checked head and decides its framing.
fn parse_head(raw: Bytes, field_count: usize) -> Result<RequestHead, RequestError> {
    // Room for exactly the fields the scan counted; on the stack for the usual head.
    let mut on_stack = [httparse::EMPTY_HEADER; FIELDS_ON_STACK];
    let mut on_heap = Vec::new();
    let storage = if field_count <= FIELDS_ON_STACK {
        &mut on_stack[..field_count]
    } else {
        on_heap.resize(field_count, httparse::EMPTY_HEADER);
        &mut on_heap[..]
    };
    let mut req = httparse::Request::new(storage);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(RequestError::BadRequest("incomplete head")),
        Err(httparse::Error::Version) => return Err(version_error(&raw)),
        Err(httparse::Error::Token) => return Err(RequestError::BadRequest("invalid token")),
        Err(httparse::Error::HeaderName) => {
            return Err(RequestError::BadRequest("invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(RequestError::BadRequest("invalid header value"))
        }
        Err(_) => return Err(RequestError::BadRequest("malformed head")),
    }
    let method = range_in(
        &raw,
        req.method.expect("complete parse has a method").as_bytes(),
    );
    let target = range_in(
        &raw,
        req.path.expect("complete parse has a target").as_bytes(),
    );
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let fields: Vec<Field> = req
        .headers
        .iter()
        .map(|h| Field {
            name: range_in(&raw, h.name.as_bytes()),
            value: range_in(&raw, h.value),
        })
        .collect();
    let mut head = RequestHead {
        raw,
        method,
        target,
        fields,
        version,
        framing: Framing::None,
        keep_alive: version == Version::Http11,
        expect_continue: false,
    };
    check_method(head.method())?;
    check_target(&head)?;
    decide_framing(&mut head)?;
    Ok(head)
}

/// Methods are tokens (httparse checked that); wizgy also refuses lowercase letters, as
/// gunicorn does: every registered method is uppercase, and `get` reaching an app that
/// compares with `"GET"` is an ambiguity with no legitimate use (docs/compliance.md).
fn check_method(method: &[u8]) -> Result<(), RequestError> {
    if method.iter().any(u8::is_ascii_lowercase) {
        return Err(RequestError::BadRequest(
            "method contains lowercase letters",
        ));
    }
    Ok(())
}

/// RFC 9110 §7.2 / RFC 3986 §3.2.2: `uri-host [ ":" port ]`, where uri-host is an IP literal
/// in brackets or a reg-name of unreserved, sub-delims and percent-encoded octets.
fn is_valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| HOST_BYTE[usize::from(b)])
}

/// The bytes [`is_valid_host`] allows.
static HOST_BYTE: [bool; 256] = alphanumeric_and(b"-._~!$&'()*+,;=%:[]");

/// A table of the ASCII letters and digits plus `symbols`, for checks byte by byte (the
/// symbol list's `contains` was a memchr call per `-`, `.` or `:` of every field name and
/// Host).
const fn alphanumeric_and(symbols: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < symbols.len() {
        table[symbols[i] as usize] = true;
        i += 1;
    }
    table
}

/// httparse says "version" both for `HTTP/2.0` and for garbage; only the former is a 505.
fn version_error(raw: &[u8]) -> RequestError {
    let line_end = memchr::memchr(b'\r', raw).unwrap_or(raw.len());
    let line = &raw[..line_end];
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major >= b'2' =>
        {
            RequestError::VersionNotSupported
        }
        _ => RequestError::BadRequest("invalid HTTP version"),
    }
}

/// RFC 9112 §3.2: origin form for most methods, `*` only for OPTIONS, the authority form only
/// for CONNECT, and the absolute form (http/https) for any method.
fn check_target(head: &RequestHead) -> Result<(), RequestError> {
    let target = head.target();
    let method = head.method();
    if method == b"CONNECT" {
        let is_authority = !target.is_empty()
            && !target.contains(&b'/')
            && !target.contains(&b'?')
            && target.contains(&b':');
        return if is_authority {
            Ok(())
        } else {
            Err(RequestError::BadRequest(
                "CONNECT needs an authority-form target",
            ))
        };
    }
    match target.first() {
        Some(b'/') => Ok(()),
        Some(b'*') if target.len() == 1 && method == b"OPTIONS" => Ok(()),
        Some(_) if absolute_form_rest(target).is_some() => Ok(()),
        _ => Err(RequestError::BadRequest("invalid request target")),
    }
}

/// Parses a Content-Length value: `1*DIGIT`, no sign, no list, no overflow (RFC 9110 §8.6).
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    const BAD: RequestError = RequestError::BadRequest("invalid Content-Length");
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(BAD)
    })
}

/// Splits a comma-separated field value into trimmed, non-empty elements (RFC 9110 §5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// Decides framing, keep-alive and `Expect` from the fields, refusing ambiguity.
fn decide_framing(head: &mut RequestHead) -> Result<(), RequestError> {
    let mut content_length: Option<u64> = None;
    let mut chunked_count = 0usize;
    let mut has_transfer_encoding = false;
    let mut seen_host = false;
    let mut seen_content_type = false;
    let mut keep_alive = head.keep_alive;
    let mut expect_continue = false;
    for field in &head.fields {
        let name = &head.raw[field.name.clone()];
        let value = &head.raw[field.value.clone()];
        if name.eq_ignore_ascii_case(b"content-length") {
            // Even identical duplicates are refused: a proxy in front may have picked the other.
            if content_length.is_some() {
                return Err(RequestError::BadRequest("duplicate Content-Length"));
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_transfer_encoding = true;
            for coding in list_elements(value) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked_count += 1;
                } else {
                    if !is_token(coding) {
                        return Err(RequestError::BadRequest("invalid transfer coding"));
                    }
                    // Codings wizgy does not decode; never fall back to Content-Length.
                    return Err(RequestError::NotImplemented);
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            if seen_host {
                return Err(RequestError::BadRequest("duplicate Host"));
            }
            if !is_valid_host(value) {
                return Err(RequestError::BadRequest("invalid Host"));
            }
            seen_host = true;
        } else if name.eq_ignore_ascii_case(b"content-type") {
            if seen_content_type {
                return Err(RequestError::BadRequest("duplicate Content-Type"));
            }
            seen_content_type = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_elements(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive")
                    && head.version == Version::Http10
                {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") && head.version == Version::Http11 {
            // RFC 9110 §10.1.1: only 100-continue is defined; Expect is ignored on HTTP/1.0.
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(RequestError::ExpectationFailed);
            }
        }
    }
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field".
    if !seen_host && head.version == Version::Http11 {
        return Err(RequestError::BadRequest("missing Host"));
    }
    // Connection: close wins over keep-alive whatever the order they came in.
    if head
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .any(|(_, v)| list_elements(v).any(|o| o.eq_ignore_ascii_case(b"close")))
    {
        keep_alive = false;
    }
    head.framing = if has_transfer_encoding {
        if head.version == Version::Http10 {
            return Err(RequestError::BadRequest("Transfer-Encoding on HTTP/1.0"));
        }
        if content_length.is_some() {
            return Err(RequestError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        // Any other coding was refused above, so `chunked` is last iff it is there once.
        if chunked_count != 1 {
            return Err(RequestError::BadRequest("chunked must be the only coding"));
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    head.keep_alive = keep_alive;
    head.expect_continue = expect_continue && head.framing != Framing::None;
    Ok(())
}

/// RFC 9110 §5.6.2 `token`.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// RFC 9110 §5.6.2 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// The bytes [`is_tchar`] allows.
static TCHAR: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Option<RequestHead>, RequestError> {
        let mut buf = BytesMut::from(input);
        HeadParser::new(Limits::default()).parse(&mut buf)
    }

    /// Feeds `input` in pieces of `step` bytes, as a slow client would.
    fn parse_split(input: &[u8], step: usize) -> Result<Option<RequestHead>, RequestError> {
        let mut parser = HeadParser::new(Limits::default());
        let mut buf = BytesMut::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            if let Some(head) = parser.parse(&mut buf)? {
                return Ok(Some(head));
            }
        }
        Ok(None)
    }

    fn status(input: &[u8]) -> u16 {
        match parse_all(input) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(e) => e.status().0,
        }
    }

    #[test]
    fn simple_get_parses_with_fields_in_order() {
        let head = parse_all(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target(), b"/a?b=1");
        assert_eq!(head.path_and_query(), (&b"/a"[..], &b"b=1"[..]));
        let fields: Vec<_> = head.fields().collect();
        assert_eq!(fields[1], (&b"X-A"[..], &b"1"[..]));
        assert_eq!(fields[2], (&b"x-a"[..], &b"2"[..]));
        assert_eq!(head.framing, Framing::None);
        assert!(head.keep_alive);
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let inputs: &[&[u8]] = &[
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\rY: 1\r\n\r\n",
            b"\r\nGET / HTTP/1.0\r\n\r\n",
        ];
        for input in inputs {
            let whole = parse_all(input).map(|h| h.map(|h| h.target().to_vec()));
            for step in 1..input.len() {
                let split = parse_split(input, step).map(|h| h.map(|h| h.target().to_vec()));
                assert_eq!(
                    whole,
                    split,
                    "step {step} for {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn malformed_heads_are_refused_with_their_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\nHost: x\n\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nNewline: a\nContent-Length: 2\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n", 400),
            (b"GET HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / FTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n Host: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n", 417),
            (b"GET foo/bar HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GE:T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"Get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        ];
        for (input, expected) in cases {
            assert_eq!(
                status(input),
                *expected,
                "for {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn host_is_optional_on_http10_and_may_be_empty_or_bracketed() {
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), 200);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), 200);
        assert_eq!(status(b"M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"-BLARGH / HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
    }

    #[test]
    fn valid_target_forms_are_accepted() {
        assert_eq!(status(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(
            status(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            200
        );
        let head = parse_all(b"GET http://example.com/p?q HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.path_and_query(), (&b"/p"[..], &b"q"[..]));
        let head = parse_all(b"GET https://example.com HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.path_and_query(), (&b""[..], &b""[..]));
        let head = parse_all(b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.path_and_query().0, b"/a");
    }

    #[test]
    fn framing_and_connection_options_are_decided() {
        let head = |input: &[u8]| parse_all(input).expect("valid").expect("complete");
        let h = head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(12));
        let h = head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expect_continue);
        let h = head(b"POST / HTTP/1.0\r\nExpect: bogus\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn limits_are_enforced_before_the_line_ends() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(long_target.as_bytes()), 414);
        // Refused while the line is still arriving, without waiting for its end.
        assert_eq!(status(&long_target.as_bytes()[..8500]), 414);
        let long_field = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(status(long_field.as_bytes()), 431);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X: 1\r\n".repeat(101)
        );
        assert_eq!(status(many.as_bytes()), 431);
    }

    #[test]
    fn head_is_split_off_leaving_the_body() {
        let mut buf = BytesMut::from(
            &b"\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET"[..],
        );
        let head = HeadParser::new(Limits::default())
            .parse(&mut buf)
            .expect("valid")
            .expect("complete");
        assert_eq!(head.method(), b"POST");
        assert_eq!(&buf[..], b"abcGET");
    }
}
