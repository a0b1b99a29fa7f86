//! Responses: validating what the app supplies, deciding the body's framing, encoding the head.
//!
//! Rule: nothing malformed reaches the wire. Status lines and header fields are checked when the
//! app hands them over (CR, LF, NUL, non-token names, hop-by-hop fields are refused), and the
//! server alone writes the framing fields (Content-Length, Transfer-Encoding, Connection).

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::date::with_http_date;
use super::head::is_token;
use super::Version;

/// Why a status or header from the app was refused; becomes an exception in the app.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResponseError {
    #[error("invalid status {0:?}: expected 'NNN Reason' with a 3-digit code from 200 to 599 (WSGI has no interim responses)")]
    InvalidStatus(String),
    #[error("invalid header name {0:?}: must be an RFC 9110 token")]
    InvalidHeaderName(String),
    #[error(
        "invalid value for header {0:?}: control characters (CR, LF, NUL, ...) are not allowed"
    )]
    InvalidHeaderValue(String),
    #[error("header {0:?} value is not latin-1")]
    NotLatin1(String),
    #[error("hop-by-hop header {0:?} is not allowed in a WSGI response (PEP 3333)")]
    HopByHop(String),
    #[error("invalid Content-Length {0:?}")]
    InvalidContentLength(String),
}

/// Fields that describe one connection hop; PEP 3333: "applications must not send them".
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A response head as the app gave it, validated, minus the fields the server writes itself.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// `fields[..status_len]` is `"200 OK"`: the status line after `HTTP/1.1 `, exactly as
    /// the app sent it.
    status_len: usize,
    /// The status text, then the app's header fields encoded as `Name: value\r\n` lines, in
    /// the app's order.
    fields: BytesMut,
    /// The app's Content-Length, if it sent one.
    pub content_length: Option<u64>,
    has_server: bool,
    has_date: bool,
}

impl ResponseHead {
    /// Validates a PEP 3333 status string: `NNN Reason phrase`.
    pub fn new(status: &str) -> Result<Self, ResponseError> {
        let bytes = status.as_bytes();
        let invalid = || ResponseError::InvalidStatus(status.to_owned());
        if bytes.len() < 4 || bytes[3] != b' ' || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let code: u16 = status[..3].parse().map_err(|_| invalid())?;
        // PEP 3333 has no interim (1xx) responses: a 1xx here would be sent as final and leave
        // the client waiting for the real one.
        if !(200..=599).contains(&code) {
            return Err(invalid());
        }
        let reason = latin1_bytes(&status[4..]).ok_or_else(invalid)?;
        if reason.iter().any(|&b| is_forbidden_in_value(b)) {
            return Err(invalid());
        }
        // One buffer for the status line and the fields: one allocation per response.
        let mut fields = BytesMut::with_capacity(256);
        fields.put_slice(&bytes[..4]);
        fields.put_slice(&reason);
        Ok(ResponseHead {
            status: code,
            status_len: fields.len(),
            fields,
            content_length: None,
            has_server: false,
            has_date: false,
        })
    }

    /// Adds one header field from the app, validating it.
    pub fn push(&mut self, name: &str, value: &str) -> Result<(), ResponseError> {
        if !is_token(name.as_bytes()) {
            return Err(ResponseError::InvalidHeaderName(name.to_owned()));
        }
        // One pass for the usual value (printable ASCII); the exact checks otherwise.
        let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b));
        let value_bytes = if plain {
            std::borrow::Cow::Borrowed(value.as_bytes())
        } else {
            let bytes =
                latin1_bytes(value).ok_or_else(|| ResponseError::NotLatin1(name.to_owned()))?;
            if bytes.iter().any(|&b| is_forbidden_in_value(b)) {
                return Err(ResponseError::InvalidHeaderValue(name.to_owned()));
            }
            bytes
        };
        // Compared in place: lowercasing a copy of every name allocated per field.
        let is = |lower: &str| name.eq_ignore_ascii_case(lower);
        if HOP_BY_HOP.iter().any(|hop| is(hop)) {
            return Err(ResponseError::HopByHop(name.to_owned()));
        }
        if is("content-length") {
            let trimmed = value.trim_matches([' ', '\t']);
            let parsed = (!trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()))
                .then(|| trimmed.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| ResponseError::InvalidContentLength(value.to_owned()))?;
            if self.content_length.is_some_and(|n| n != parsed) {
                return Err(ResponseError::InvalidContentLength(value.to_owned()));
            }
            self.content_length = Some(parsed);
            // Written by the server, which knows when a body must not carry one.
            return Ok(());
        }
        self.has_server |= is("server");
        self.has_date |= is("date");
        self.fields.put_slice(name.as_bytes());
        self.fields.put_slice(b": ");
        self.fields.put_slice(&value_bytes);
        self.fields.put_slice(b"\r\n");
        Ok(())
    }

    /// The app's header fields as `(name, value)`, in its order (without Content-Length,
    /// which is in [`ResponseHead::content_length`]).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        // Each line is `Name: value\r\n`, checked in push(): a name is a token (no colon),
        // a value holds no CR or LF.
        self.fields[self.status_len..]
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = memchr::memchr(b':', line).unwrap_or(line.len());
                let value = line.get(colon + 2..).unwrap_or_default();
                (&line[..colon], value)
            })
    }

    /// Whether the app set `Server` and `Date` itself.
    pub fn has_server_and_date(&self) -> (bool, bool) {
        (self.has_server, self.has_date)
    }

    /// Whether a response with this status never has a body (RFC 9110 §6.4.1: 1xx, 204, 304).
    pub fn is_bodiless_status(&self) -> bool {
        self.status < 200 || self.status == 204 || self.status == 304
    }
}

/// Control characters other than HTAB, and DEL, are never allowed in a field value or reason.
fn is_forbidden_in_value(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Encodes a str holding only U+0000..U+00FF as latin-1 bytes ("bytes in str", PEP 3333).
fn latin1_bytes(text: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
    if text.is_ascii() {
        return Some(std::borrow::Cow::Borrowed(text.as_bytes()));
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(std::borrow::Cow::Owned)
}

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body bytes are sent (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length: n`; bytes beyond it are dropped.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 without a length).
    CloseDelimited,
}

/// What the connection knows about the exchange when it writes the head.
#[derive(Debug, Clone, Copy)]
pub struct HeadContext {
    pub version: Version,
    pub is_head_request: bool,
    /// Whether the connection will be kept after this exchange, if the framing allows it.
    pub keep_alive: bool,
    /// The total body length, when the whole body is already known (a list, a file).
    pub known_length: Option<u64>,
}

/// Decides the framing and encodes the head into `out`. Returns the framing and whether the
/// connection stays open afterwards.
pub fn encode_head(
    head: &ResponseHead,
    ctx: HeadContext,
    out: &mut BytesMut,
) -> (BodyFraming, bool) {
    let mut keep_alive = ctx.keep_alive;
    let framing = if head.is_bodiless_status() || ctx.is_head_request {
        BodyFraming::Empty
    } else if let Some(n) = head.content_length.or(ctx.known_length) {
        BodyFraming::Length(n)
    } else if ctx.version == Version::Http11 {
        BodyFraming::Chunked
    } else {
        keep_alive = false;
        BodyFraming::CloseDelimited
    };
    out.reserve(128 + head.fields.len());
    out.put_slice(b"HTTP/1.1 ");
    let (status_text, fields) = head.fields.split_at(head.status_len);
    out.put_slice(status_text);
    out.put_slice(b"\r\n");
    out.put_slice(fields);
    if !head.has_server {
        out.put_slice(b"Server: wizgy\r\n");
    }
    if !head.has_date {
        out.put_slice(b"Date: ");
        with_http_date(|date| out.put_slice(date));
        out.put_slice(b"\r\n");
    }
    match framing {
        BodyFraming::Length(n) => write_content_length(out, n),
        // A HEAD response carries the length the GET would have had (RFC 9110 §9.3.2), which
        // only the app can know: frameworks answer HEAD with an empty body, so a length
        // computed from it would be a wrong 0.
        BodyFraming::Empty if ctx.is_head_request && !head.is_bodiless_status() => {
            if let Some(n) = head.content_length {
                write_content_length(out, n);
            }
        }
        BodyFraming::Empty if head.status == 304 => {
            if let Some(n) = head.content_length {
                write_content_length(out, n);
            }
        }
        BodyFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    } else if ctx.version == Version::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    (framing, keep_alive)
}

fn write_content_length(out: &mut BytesMut, n: u64) {
    out.put_slice(b"Content-Length: ");
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

/// A complete error response the server writes itself (400, 500, ...): plain text,
/// `Content-Length`, `Connection: close`.
pub fn encode_error(status: u16, reason: &str, out: &mut BytesMut) {
    use std::fmt::Write;
    let body = format!("{status} {reason}\n");
    write!(out, "HTTP/1.1 {status} {reason}\r\nServer: wizgy\r\nDate: ")
        .expect("writing to BytesMut cannot fail");
    with_http_date(|date| out.put_slice(date));
    write!(
        out,
        "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writing to BytesMut cannot fail");
}

/// The interim response for `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(version: Version) -> HeadContext {
        HeadContext {
            version,
            is_head_request: false,
            keep_alive: true,
            known_length: None,
        }
    }

    fn encode(head: &ResponseHead, ctx: HeadContext) -> (String, BodyFraming, bool) {
        let mut out = BytesMut::new();
        let (framing, keep) = encode_head(head, ctx, &mut out);
        (String::from_utf8_lossy(&out).into_owned(), framing, keep)
    }

    #[test]
    fn status_must_be_three_digits_space_reason() {
        assert!(ResponseHead::new("200 OK").is_ok());
        assert!(ResponseHead::new("299 Custom Thing").is_ok());
        for bad in [
            "200",
            "200OK",
            "20 OK",
            "2000 OK",
            "abc OK",
            "099 X",
            "200 OK\r\nX: y",
            "200 O\0K",
            "100 Continue",
            "101 Switching Protocols",
            "600 X",
        ] {
            assert!(ResponseHead::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_header_fields_are_refused() {
        let mut head = ResponseHead::new("200 OK").expect("valid");
        assert!(matches!(
            head.push("X-A", "b\r\nc"),
            Err(ResponseError::InvalidHeaderValue(_))
        ));
        assert!(matches!(
            head.push("X-A", "b\0"),
            Err(ResponseError::InvalidHeaderValue(_))
        ));
        assert!(matches!(
            head.push("X A", "b"),
            Err(ResponseError::InvalidHeaderName(_))
        ));
        assert!(matches!(
            head.push("X\r\nA", "b"),
            Err(ResponseError::InvalidHeaderName(_))
        ));
        assert!(matches!(
            head.push("Connection", "close"),
            Err(ResponseError::HopByHop(_))
        ));
        assert!(matches!(
            head.push("X", "\u{0100}"),
            Err(ResponseError::NotLatin1(_))
        ));
        assert!(matches!(
            head.push("Content-Length", "1x"),
            Err(ResponseError::InvalidContentLength(_))
        ));
        assert!(head.push("X-Tab", "a\tb").is_ok());
        assert!(head.push("X-Latin", "caf\u{e9}").is_ok());
    }

    #[test]
    fn framing_follows_length_version_and_status() {
        let mut head = ResponseHead::new("200 OK").expect("valid");
        let (text, framing, keep) = encode(&head, ctx(Version::Http11));
        assert_eq!(framing, BodyFraming::Chunked);
        assert!(keep);
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        let (text, framing, keep) = encode(&head, ctx(Version::Http10));
        assert_eq!(framing, BodyFraming::CloseDelimited);
        assert!(!keep);
        assert!(text.contains("Connection: close\r\n"), "{text}");
        head.push("Content-Length", "5").expect("valid");
        let (text, framing, _) = encode(&head, ctx(Version::Http11));
        assert_eq!(framing, BodyFraming::Length(5));
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        let no_content = ResponseHead::new("204 No Content").expect("valid");
        let (text, framing, _) = encode(&no_content, ctx(Version::Http11));
        assert_eq!(framing, BodyFraming::Empty);
        assert!(
            !text.contains("Content-Length") && !text.contains("Transfer-Encoding"),
            "{text}"
        );
    }

    #[test]
    fn head_response_keeps_content_length_and_sends_no_body() {
        let mut head = ResponseHead::new("200 OK").expect("valid");
        head.push("Content-Length", "13").expect("valid");
        let mut c = ctx(Version::Http11);
        c.is_head_request = true;
        let (text, framing, _) = encode(&head, c);
        assert_eq!(framing, BodyFraming::Empty);
        assert!(text.contains("Content-Length: 13\r\n"), "{text}");
    }

    #[test]
    fn head_response_never_computes_a_length_from_the_empty_body() {
        let head = ResponseHead::new("200 OK").expect("valid");
        let mut c = ctx(Version::Http11);
        c.is_head_request = true;
        c.known_length = Some(0);
        let (text, framing, keep) = encode(&head, c);
        assert_eq!(framing, BodyFraming::Empty);
        assert!(keep);
        assert!(!text.contains("Content-Length"), "{text}");
    }

    #[test]
    fn app_server_header_wins_and_date_is_added() {
        let mut head = ResponseHead::new("200 OK").expect("valid");
        head.push("Server", "mine").expect("valid");
        let (text, _, _) = encode(&head, ctx(Version::Http11));
        assert!(
            text.contains("Server: mine\r\n") && !text.contains("Server: wizgy"),
            "{text}"
        );
        assert!(text.contains("\r\nDate: "), "{text}");
    }

    #[test]
    fn http10_keep_alive_is_echoed() {
        let head = ResponseHead::new("200 OK").expect("valid");
        let mut c = ctx(Version::Http10);
        c.known_length = Some(3);
        let (text, _, keep) = encode(&head, c);
        assert!(keep);
        assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
    }
}
