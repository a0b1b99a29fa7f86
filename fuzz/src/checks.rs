//! The invariants the fuzz targets check, as plain functions over one byte string.
//!
//! This file depends only on wizgy-core and bytes: the fuzz crate uses it as a module
//! (`fuzz/src/lib.rs`) and wizgy-core's corpus replay test (`tests/fuzz_corpus.rs`) includes it
//! by path, so a committed seed and a fuzzer run are judged by the same code. A broken invariant
//! is a panic whose message shows the input (escaped); libFuzzer reports it as a crash.
//!
//! The invariant common to all three parsers: the connection feeds them whatever each `read()`
//! returned, so the same bytes fed whole or cut anywhere must give the same outcome. On top of
//! that, what a parser accepts is re-read here by simpler, independent code (a head's lines, a
//! chunked body's framing, a PROXY header's fields) and must agree with what it reported.

use bytes::{Buf, BytesMut};
use wizgy_core::http1::chunked::{ChunkedDecoder, Decoded};
use wizgy_core::http1::{Framing, HeadParser, Limits, Version};
use wizgy_core::proxy_protocol::{self, ProxyHeader};

// ---------------------------------------------------------------------------------------------
// Splitting an input into reads

/// One way of cutting an input into the pieces successive reads would return.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// Pieces of this many bytes (the last may be shorter).
    Step(usize),
    /// Pieces of pseudo-random sizes (mostly 1..=7 bytes, sometimes up to 256), from this seed.
    Random(u64),
}

/// The splits every check compares with the whole input: byte by byte (every boundary), a step
/// derived from the first byte, and a pseudo-random cut seeded from the first byte and length.
fn splits(input: &[u8]) -> [Split; 3] {
    let first = input.first().copied().unwrap_or(0);
    [
        Split::Step(1),
        Split::Step(usize::from(first % 16) + 2),
        Split::Random((u64::from(first) << 32) ^ input.len() as u64),
    ]
}

fn cut(input: &[u8], split: Split) -> Vec<&[u8]> {
    match split {
        Split::Step(n) => input.chunks(n.max(1)).collect(),
        Split::Random(seed) => {
            // xorshift64*: deterministic, so a failing input replays identically.
            let mut state = (seed ^ 0x9E37_79B9_7F4A_7C15) | 1;
            let mut pieces = Vec::new();
            let mut rest = input;
            while !rest.is_empty() {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 8;
                let size = if r % 8 == 0 { r % 256 + 1 } else { r % 7 + 1 };
                let size = usize::try_from(size).unwrap_or(1).min(rest.len());
                let (piece, tail) = rest.split_at(size);
                pieces.push(piece);
                rest = tail;
            }
            pieces
        }
    }
}

/// The input, escaped, for panic messages.
fn show(input: &[u8]) -> String {
    const MAX: usize = 600;
    if input.len() <= MAX {
        input.escape_ascii().to_string()
    } else {
        format!("{}... ({} bytes)", input[..MAX].escape_ascii(), input.len())
    }
}

/// RFC 9110 §5.6.2 `tchar`, written here rather than imported so the re-reading is independent.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// A field value byte: HTAB, SP, VCHAR or obs-text; no other CTL, no DEL.
fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Every CR is followed by LF, every LF follows a CR, and there is no NUL.
fn is_crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        0 => false,
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

// ---------------------------------------------------------------------------------------------
// Request heads

/// Every status a refused head may get (`RequestError::status`).
const HEAD_STATUSES: [u16; 8] = [400, 408, 413, 414, 417, 431, 501, 505];
/// Pipelined heads read from one input before stopping.
const MAX_HEADS: usize = 4;
/// Leading empty lines tolerated before a request line (the contract's 64 bytes).
const MAX_LEADING_EMPTY_LINES: usize = 64;

/// Small limits, so the fuzzer reaches 414/431 and their exact boundaries with short inputs.
const SMALL_LIMITS: Limits = Limits {
    max_request_line: 48,
    max_fields: 6,
    max_field_size: 40,
};

/// Bytes that print escaped (and shortened) in panic messages, not as a list of numbers.
#[derive(Clone, PartialEq, Eq)]
struct Text(Vec<u8>);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", show(&self.0))
    }
}

impl std::ops::Deref for Text {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

/// What the connection learns from one parsed head, plus where its bytes were in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    /// Stream offsets of the head's bytes, leading empty lines and final CRLF CRLF included.
    start: usize,
    end: usize,
    method: Text,
    target: Text,
    version: Version,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    fields: Vec<(Text, Text)>,
    path: Text,
    query: Text,
}

/// How reading heads from one input stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeadEnd {
    /// The input ended inside a head; this many bytes wait in the buffer.
    Incomplete { pending: usize },
    /// The input ended inside a Content-Length body.
    InBody,
    /// A chunked head; bodies are the chunked target's business, so reading stops.
    Chunked,
    /// `MAX_HEADS` heads were read.
    Enough,
    /// A head was refused with this status.
    Refused(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HeadRun {
    heads: Vec<Head>,
    end: HeadEnd,
}

/// Reads heads from `pieces` as a connection does: parse, skip a Content-Length body, parse
/// the next pipelined head, until an error, a chunked body, or `MAX_HEADS` heads.
fn drive_heads<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> HeadRun {
    let mut parser = HeadParser::new(limits);
    let mut buf = BytesMut::new();
    let mut offset = 0usize; // stream offset of buf[0]
    let mut skip = 0u64; // body bytes still to skip
    let mut heads = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(buf.len());
                buf.advance(n);
                offset += n;
                skip -= n as u64;
                if skip > 0 {
                    break;
                }
            }
            let before = buf.len();
            match parser.parse(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Ok(Some(head)) => {
                    let len = before - buf.len();
                    let (path, query) = head.path_and_query();
                    heads.push(Head {
                        start: offset,
                        end: offset + len,
                        method: Text(head.method().to_vec()),
                        target: Text(head.target().to_vec()),
                        version: head.version,
                        framing: head.framing,
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        fields: head
                            .fields()
                            .map(|(n, v)| (Text(n.to_vec()), Text(v.to_vec())))
                            .collect(),
                        path: Text(path.to_vec()),
                        query: Text(query.to_vec()),
                    });
                    offset += len;
                    match head.framing {
                        Framing::Chunked => {
                            return HeadRun {
                                heads,
                                end: HeadEnd::Chunked,
                            }
                        }
                        Framing::Length(n) => skip = n,
                        Framing::None => {}
                    }
                    if heads.len() == MAX_HEADS {
                        return HeadRun {
                            heads,
                            end: HeadEnd::Enough,
                        };
                    }
                }
                Err(error) => {
                    return HeadRun {
                        heads,
                        end: HeadEnd::Refused(error.status().0),
                    }
                }
            }
        }
    }
    let end = if skip > 0 {
        HeadEnd::InBody
    } else {
        HeadEnd::Incomplete { pending: buf.len() }
    };
    HeadRun { heads, end }
}

/// The `head` target: [`HeadParser`] over arbitrary bytes, with the default and small limits.
///
/// - Fed whole, byte by byte, in steps derived from the first byte and in pseudo-random pieces,
///   the outcome is the same: the same heads (method, target, version, framing, keep-alive,
///   Expect, fields, path and query, and the same stream offsets), then the same end (incomplete
///   with the same bytes pending, or refused with the same status).
/// - A refusal's status is one of 400, 408, 413, 414, 417, 431, 501, 505.
/// - An accepted head, re-read from the input by simple line splitting, agrees with what the
///   parser reported (method, target, version, fields in order, path and query), and obeys the
///   rules of docs/compliance.md that a head alone decides: CRLF only and no NUL, at most 64
///   bytes of leading empty lines, the line and field limits, an uppercase token method, the
///   target form for the method, token field names and CTL-free OWS-trimmed values, one Host
///   (required on HTTP/1.1, RFC 3986 characters only), one Content-Type, framing from exactly
///   one `1*19DIGIT` Content-Length or a Transfer-Encoding that is `chunked` once (HTTP/1.1
///   only, never with Content-Length), keep-alive, and Expect only as `100-continue`.
/// - Incomplete input never holds more bytes than the limits allow a head to have.
/// - Nothing panics.
pub fn check_head(input: &[u8]) {
    for limits in [Limits::default(), SMALL_LIMITS] {
        let whole = drive_heads(limits, [input]);
        for split in splits(input) {
            let split_run = drive_heads(limits, cut(input, split));
            assert_eq!(
                whole,
                split_run,
                "head: whole vs {split:?} differ ({limits:?}) for {}",
                show(input)
            );
        }
        for head in &whole.heads {
            check_accepted_head(input, head, limits);
        }
        match whole.end {
            HeadEnd::Refused(status) => assert!(
                HEAD_STATUSES.contains(&status),
                "head: unexpected status {status} for {}",
                show(input)
            ),
            HeadEnd::Incomplete { pending } => {
                let bound = MAX_LEADING_EMPTY_LINES
                    + limits.max_request_line
                    + 2
                    + limits.max_fields * (limits.max_field_size + 2)
                    + limits.max_request_line.max(limits.max_field_size);
                assert!(
                    pending <= bound,
                    "head: {pending} bytes pending (> {bound}) with {limits:?} for {}",
                    show(input)
                );
            }
            HeadEnd::InBody | HeadEnd::Chunked | HeadEnd::Enough => {}
        }
    }
}

/// Re-reads an accepted head from its bytes in the input and compares.
fn check_accepted_head(input: &[u8], head: &Head, limits: Limits) {
    let ctx = || format!("head: accepted {head:?} ({limits:?}) from {}", show(input));
    let bytes = &input[head.start..head.end];
    assert!(
        bytes.ends_with(b"\r\n\r\n"),
        "does not end in CRLF CRLF: {}",
        ctx()
    );
    assert!(is_crlf_only(bytes), "bare CR, bare LF or NUL: {}", ctx());

    // Lines without their CRLF; the head ends with an empty line, then split() adds one more.
    let mut lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    lines.truncate(lines.len().saturating_sub(2));
    let leading = lines.iter().take_while(|l| l.is_empty()).count();
    assert!(
        2 * leading <= MAX_LEADING_EMPTY_LINES,
        "{leading} empty lines: {}",
        ctx()
    );
    let request_line = lines.get(leading).copied().unwrap_or_default();
    let field_lines = lines.get(leading + 1..).unwrap_or_default();

    // The request line: exactly `method SP target SP version`.
    assert!(
        request_line.len() <= limits.max_request_line,
        "request line over limit: {}",
        ctx()
    );
    let parts: Vec<&[u8]> = request_line.split(|&b| b == b' ').collect();
    assert_eq!(parts.len(), 3, "request line is not three parts: {}", ctx());
    assert_eq!(parts[0], head.method.as_slice(), "method: {}", ctx());
    assert_eq!(parts[1], head.target.as_slice(), "target: {}", ctx());
    assert_eq!(parts[2], version_text(head.version), "version: {}", ctx());
    assert!(is_token(&head.method), "method is not a token: {}", ctx());
    assert!(
        !head.method.iter().any(u8::is_ascii_lowercase),
        "method has lowercase letters: {}",
        ctx()
    );
    assert!(
        !head.target.is_empty() && head.target.iter().all(|&b| b > 0x20 && b != 0x7f),
        "target has whitespace or CTL: {}",
        ctx()
    );
    check_target_form(head, &ctx);

    // Fields: `name ":" OWS value OWS`, in order, within the limits.
    assert!(
        field_lines.len() <= limits.max_fields,
        "too many fields: {}",
        ctx()
    );
    assert_eq!(
        field_lines.len(),
        head.fields.len(),
        "field count: {}",
        ctx()
    );
    for (line, (name, value)) in field_lines.iter().zip(&head.fields) {
        assert!(
            line.len() <= limits.max_field_size,
            "field line over limit: {}",
            ctx()
        );
        let colon = line.iter().position(|&b| b == b':');
        let colon = colon.unwrap_or_else(|| panic!("field line without colon: {}", ctx()));
        assert_eq!(&line[..colon], name.as_slice(), "field name: {}", ctx());
        assert_eq!(
            line[colon + 1..].trim_ascii(),
            value.as_slice(),
            "field value: {}",
            ctx()
        );
        assert!(is_token(name), "field name is not a token: {}", ctx());
        assert!(
            value.iter().all(|&b| is_field_value_byte(b)),
            "CTL in value: {}",
            ctx()
        );
        assert!(
            !value.starts_with(b" ")
                && !value.starts_with(b"\t")
                && !value.ends_with(b" ")
                && !value.ends_with(b"\t"),
            "value not OWS-trimmed: {}",
            ctx()
        );
    }
    check_framing(head, &ctx);
}

fn version_text(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"HTTP/1.0",
        Version::Http11 => b"HTTP/1.1",
        // Never parsed from bytes: only HTTP/2 streams carry it.
        Version::Http2 => b"HTTP/2",
    }
}

/// RFC 9112 §3.2 target forms, and `path_and_query` of an origin-form target.
fn check_target_form(head: &Head, ctx: &dyn Fn() -> String) {
    let target = head.target.as_slice();
    if head.method.as_slice() == b"CONNECT" {
        assert!(
            target.contains(&b':') && !target.contains(&b'/') && !target.contains(&b'?'),
            "CONNECT target is not authority form: {}",
            ctx()
        );
    } else if target == b"*" {
        assert_eq!(
            head.method.as_slice(),
            b"OPTIONS",
            "`*` without OPTIONS: {}",
            ctx()
        );
    } else if target.starts_with(b"/") {
        let no_fragment = target.split(|&b| b == b'#').next().unwrap_or_default();
        let mut rebuilt = head.path.to_vec();
        if rebuilt.len() < no_fragment.len() {
            rebuilt.push(b'?');
            rebuilt.extend_from_slice(&head.query);
        }
        assert_eq!(
            rebuilt,
            no_fragment,
            "path and query do not rebuild the target: {}",
            ctx()
        );
    } else {
        let lower = target.to_ascii_lowercase();
        let rest = lower
            .strip_prefix(b"http://")
            .or_else(|| lower.strip_prefix(b"https://"));
        assert!(
            rest.is_some_and(|r| !r.is_empty() && r[0] != b'/'),
            "target is neither origin, asterisk, authority nor http(s) absolute form: {}",
            ctx()
        );
    }
}

/// RFC 9112 §6: the framing follows from Content-Length / Transfer-Encoding without ambiguity.
fn check_framing(head: &Head, ctx: &dyn Fn() -> String) {
    let named = |name: &str| -> Vec<&[u8]> {
        head.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    };
    let content_length = named("content-length");
    let transfer_encoding = named("transfer-encoding");
    assert!(
        content_length.len() <= 1,
        "several Content-Length: {}",
        ctx()
    );
    let host = named("host");
    assert!(host.len() <= 1, "several Host: {}", ctx());
    if head.version == Version::Http11 {
        assert_eq!(host.len(), 1, "HTTP/1.1 without Host: {}", ctx());
    }
    for value in host {
        // RFC 3986 reg-name / IP-literal / port characters (never SP / @ ? # \).
        assert!(
            value
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b)),
            "Host value outside RFC 3986 characters: {}",
            ctx()
        );
    }
    assert!(
        named("content-type").len() <= 1,
        "several Content-Type: {}",
        ctx()
    );
    if !transfer_encoding.is_empty() {
        assert_eq!(
            head.framing,
            Framing::Chunked,
            "TE without chunked framing: {}",
            ctx()
        );
        assert!(
            content_length.is_empty(),
            "TE with Content-Length: {}",
            ctx()
        );
        assert_eq!(head.version, Version::Http11, "TE on HTTP/1.0: {}", ctx());
        let codings: Vec<Vec<u8>> = transfer_encoding
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|c| c.trim_ascii().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            codings,
            [b"chunked".to_vec()],
            "codings other than one chunked: {}",
            ctx()
        );
    } else if let Some(value) = content_length.first() {
        assert!(
            !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit),
            "Content-Length is not 1*19DIGIT: {}",
            ctx()
        );
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Content-Length does not fit a u64: {}", ctx()));
        let expected = if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        };
        assert_eq!(head.framing, expected, "Content-Length framing: {}", ctx());
    } else {
        assert_eq!(
            head.framing,
            Framing::None,
            "framing without CL or TE: {}",
            ctx()
        );
    }

    let connection_options: Vec<Vec<u8>> = named("connection")
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|o| o.trim_ascii().to_ascii_lowercase())
        .collect();
    let has = |option: &[u8]| connection_options.iter().any(|o| o == option);
    let keep_alive = if has(b"close") {
        false
    } else {
        head.version == Version::Http11 || has(b"keep-alive")
    };
    assert_eq!(head.keep_alive, keep_alive, "keep-alive: {}", ctx());

    if head.version == Version::Http11 {
        for value in named("expect") {
            assert!(
                value.eq_ignore_ascii_case(b"100-continue"),
                "accepted Expect other than 100-continue: {}",
                ctx()
            );
        }
    }
    let expect_continue = head.version == Version::Http11
        && head.framing != Framing::None
        && !named("expect").is_empty();
    assert_eq!(
        head.expect_continue,
        expect_continue,
        "expect_continue: {}",
        ctx()
    );
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

/// Statuses a chunked framing error may get (the decoder itself only knows 400).
const CHUNKED_STATUSES: [u16; 2] = [400, 413];
/// Most bytes the decoder may leave buffered while asking for more: a 4096-byte size line or
/// 8192 trailer bytes, plus a CR waiting for its LF (wizgy-core's documented limits).
const MAX_CHUNKED_PENDING: usize = 8192 + 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkedEnd {
    /// The body and its trailers ended; the bytes after them start at this offset.
    Done { rest_start: usize },
    /// The input ended first; this many bytes wait in the buffer.
    Incomplete { pending: usize },
    /// Refused with this status.
    Refused(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ChunkedRun {
    /// The data pieces, concatenated (up to the end, the error, or the end of input).
    body: Vec<u8>,
    end: ChunkedEnd,
}

fn drive_chunked<'a>(max: usize, pieces: impl IntoIterator<Item = &'a [u8]>) -> ChunkedRun {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut body = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match decoder.decode(&mut buf, max) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty(), "chunked: an empty data piece");
                    assert!(data.len() <= max.max(1), "chunked: piece over max {max}");
                    body.extend_from_slice(&data);
                }
                Ok(Decoded::NeedMore) => {
                    assert!(!decoder.is_done(), "chunked: NeedMore when done");
                    assert!(
                        buf.len() <= MAX_CHUNKED_PENDING,
                        "chunked: {} bytes buffered while waiting for more",
                        buf.len()
                    );
                    break;
                }
                Ok(Decoded::End) => {
                    assert!(decoder.is_done(), "chunked: End but not done");
                    let before = buf.len();
                    assert_eq!(decoder.decode(&mut buf, max), Ok(Decoded::End));
                    assert_eq!(
                        buf.len(),
                        before,
                        "chunked: decoding after End consumed bytes"
                    );
                    return ChunkedRun {
                        body,
                        end: ChunkedEnd::Done {
                            rest_start: fed - buf.len(),
                        },
                    };
                }
                Err(error) => {
                    return ChunkedRun {
                        body,
                        end: ChunkedEnd::Refused(error.status().0),
                    }
                }
            }
        }
    }
    ChunkedRun {
        body,
        end: ChunkedEnd::Incomplete { pending: buf.len() },
    }
}

/// The `chunked` target: [`ChunkedDecoder`] over arbitrary bytes.
///
/// - With a small max piece (0..=7, from the first byte) or an unbounded one, fed whole, byte
///   by byte, in steps and in pseudo-random pieces: the same concatenated body, then the same
///   end (done with the same bytes left after it, incomplete with the same bytes pending, or
///   refused with the same status, 400 or 413).
/// - Data pieces are non-empty and at most max; the body is never longer than the input; at
///   most 8194 bytes stay buffered while the decoder asks for more; End is sticky.
/// - An accepted body, re-read by a plain one-pass reading of RFC 9112 §7.1 (hex size of at most
///   16 significant digits, strict extensions, data, CRLF, trailers that are well-formed and not
///   Content-Length / Transfer-Encoding / Host / Trailer), gives the same body.
/// - Nothing panics.
pub fn check_chunked(input: &[u8]) {
    let max = usize::from(input.first().copied().unwrap_or(0) % 8);
    let whole = drive_chunked(max, [input]);
    let unbounded = drive_chunked(usize::MAX, [input]);
    assert_eq!(
        whole,
        unbounded,
        "chunked: max {max} vs unbounded for {}",
        show(input)
    );
    for split in splits(input) {
        let split_run = drive_chunked(max, cut(input, split));
        assert_eq!(
            whole,
            split_run,
            "chunked: whole vs {split:?} (max {max}) differ for {}",
            show(input)
        );
    }
    assert!(
        whole.body.len() <= input.len(),
        "chunked: body longer than input"
    );
    match whole.end {
        ChunkedEnd::Done { rest_start } => {
            assert!(
                rest_start <= input.len(),
                "chunked: consumed more than the input"
            );
            let body = reread_chunked(&input[..rest_start], input);
            assert_eq!(
                body,
                whole.body,
                "chunked: re-read body differs for {}",
                show(input)
            );
        }
        ChunkedEnd::Refused(status) => assert!(
            CHUNKED_STATUSES.contains(&status),
            "chunked: unexpected status {status} for {}",
            show(input)
        ),
        ChunkedEnd::Incomplete { .. } => {}
    }
}

/// Re-reads bytes the decoder accepted as one complete chunked body, independently of it, and
/// returns the body; panics if they are not a well-formed chunked body.
fn reread_chunked(mut framed: &[u8], input: &[u8]) -> Vec<u8> {
    let ctx = || format!("chunked: accepted {}", show(input));
    let mut body = Vec::new();
    loop {
        let line = take_crlf_line(&mut framed, &ctx);
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        assert!(digits > 0, "size line without digits: {}", ctx());
        let significant = line[..digits].iter().skip_while(|&&b| b == b'0').count();
        assert!(significant <= 16, "size over 16 hex digits: {}", ctx());
        let size = std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .unwrap_or_else(|| panic!("size is not hex: {}", ctx()));
        assert_chunk_extensions(&line[digits..], &ctx);
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        assert!(
            framed.len() >= size,
            "chunk data shorter than its size: {}",
            ctx()
        );
        body.extend_from_slice(&framed[..size]);
        framed = &framed[size..];
        assert!(
            framed.starts_with(b"\r\n"),
            "chunk data not followed by CRLF: {}",
            ctx()
        );
        framed = &framed[2..];
    }
    loop {
        let line = take_crlf_line(&mut framed, &ctx);
        if line.is_empty() {
            assert!(
                framed.is_empty(),
                "bytes between the end and rest_start: {}",
                ctx()
            );
            return body;
        }
        let colon = line.iter().position(|&b| b == b':');
        let colon = colon.unwrap_or_else(|| panic!("trailer without colon: {}", ctx()));
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        assert!(is_token(name), "trailer name is not a token: {}", ctx());
        assert!(
            value.iter().all(|&b| is_field_value_byte(b)),
            "CTL in trailer: {}",
            ctx()
        );
        for forbidden in ["content-length", "transfer-encoding", "host", "trailer"] {
            assert!(
                !name.eq_ignore_ascii_case(forbidden.as_bytes()),
                "forbidden trailer {forbidden}: {}",
                ctx()
            );
        }
    }
}

/// Takes one line ending in CRLF, which must not hold CR, LF or NUL itself.
fn take_crlf_line<'a>(rest: &mut &'a [u8], ctx: &dyn Fn() -> String) -> &'a [u8] {
    let end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
    let end = end.unwrap_or_else(|| panic!("line without CRLF: {}", ctx()));
    assert!(rest[end..].starts_with(b"\r\n"), "bare CR or LF: {}", ctx());
    let line = &rest[..end];
    assert!(!line.contains(&0), "NUL in a framing line: {}", ctx());
    *rest = &rest[end + 2..];
    line
}

/// `*( ";" token [ "=" ( token / quoted-string ) ] )`, no whitespace anywhere.
fn assert_chunk_extensions(mut ext: &[u8], ctx: &dyn Fn() -> String) {
    while let Some(rest) = ext.strip_prefix(b";") {
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        assert!(name > 0, "extension without a name: {}", ctx());
        ext = &rest[name..];
        let Some(value) = ext.strip_prefix(b"=") else {
            continue;
        };
        if let Some(quoted) = value.strip_prefix(b"\"") {
            let mut i = 0;
            loop {
                let c = quoted.get(i).copied();
                match c {
                    None => panic!("unterminated quoted extension: {}", ctx()),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let pair = quoted.get(i + 1).copied().unwrap_or(0);
                        assert!(is_field_value_byte(pair), "bad quoted-pair: {}", ctx());
                        i += 2;
                    }
                    Some(c) => {
                        assert!(is_field_value_byte(c), "CTL in quoted extension: {}", ctx());
                        i += 1;
                    }
                }
            }
            ext = &quoted[i + 1..];
        } else {
            let len = value.iter().take_while(|&&b| is_tchar(b)).count();
            assert!(len > 0, "extension `=` without a value: {}", ctx());
            ext = &value[len..];
        }
    }
    assert!(ext.is_empty(), "junk in chunk extensions: {}", ctx());
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol headers

const V1_PREFIX: &[u8] = b"PROXY ";
/// v1 lines are at most 107 bytes including CRLF (HAProxy's spec §2.1).
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyOutcome {
    Incomplete,
    Header(ProxyHeader, usize),
    /// Every `ProxyError` closes the connection the same way; its message is for the log only,
    /// so refusals compare equal whatever the message.
    Refused,
}

fn proxy_outcome(buf: &[u8]) -> ProxyOutcome {
    match proxy_protocol::parse(buf) {
        Ok(None) => ProxyOutcome::Incomplete,
        Ok(Some((header, len))) => ProxyOutcome::Header(header, len),
        Err(_) => ProxyOutcome::Refused,
    }
}

/// The `proxy_protocol` target: `proxy_protocol::parse` over arbitrary bytes.
///
/// - Parsing every prefix (as a connection re-parses its growing buffer after each read): each
///   prefix is incomplete until the first one that decides, and that one and every longer
///   prefix decide exactly as the whole input does (the same header and length, or a refusal).
/// - An accepted header's length is within the input (and 107 bytes for v1, 16 + the declared
///   length for v2); its bytes re-read independently give the same addresses: a v1 TCP4 line is
///   exactly `PROXY TCP4 src dst sport dport\r\n` as formatted back, and has no CR or LF before
///   its CRLF.
/// - Enough bytes always decide: 108 bytes for v1, 16 + the declared length for v2.
/// - Nothing panics.
pub fn check_proxy(input: &[u8]) {
    let whole = proxy_outcome(input);
    let mut decided_at = None;
    for end in 0..input.len() {
        match proxy_outcome(&input[..end]) {
            ProxyOutcome::Incomplete => assert!(
                decided_at.is_none(),
                "proxy: prefix of {end} bytes is incomplete after the {decided_at:?}-byte prefix \
                 decided, for {}",
                show(input)
            ),
            decided => {
                assert_eq!(
                    decided,
                    whole,
                    "proxy: prefix of {end} bytes disagrees with the whole for {}",
                    show(input)
                );
                decided_at.get_or_insert(end);
            }
        }
    }

    let is_v1 = input.starts_with(V1_PREFIX);
    let is_v2 = input.starts_with(V2_SIGNATURE);
    match whole {
        ProxyOutcome::Header(header, len) => {
            assert!(
                len > 0 && len <= input.len(),
                "proxy: length {len} out of input"
            );
            if is_v1 {
                check_v1_header(&input[..len], header, input);
            } else {
                assert!(
                    is_v2,
                    "proxy: accepted without a signature: {}",
                    show(input)
                );
                check_v2_header(&input[..len], header, input);
            }
        }
        ProxyOutcome::Incomplete => {
            let need = if is_v1 {
                V1_MAX + 1
            } else if is_v2 && input.len() >= 16 {
                16 + usize::from(u16::from_be_bytes([input[14], input[15]]))
            } else {
                V2_SIGNATURE.len().max(16)
            };
            assert!(
                input.len() < need,
                "proxy: {} bytes are still incomplete (at most {} should decide) for {}",
                input.len(),
                need,
                show(input)
            );
        }
        ProxyOutcome::Refused => {}
    }
}

fn check_v1_header(line: &[u8], header: ProxyHeader, input: &[u8]) {
    let ctx = || format!("proxy: accepted v1 {header:?} from {}", show(input));
    assert!(line.len() <= V1_MAX, "v1 header over 107 bytes: {}", ctx());
    assert!(
        line.ends_with(b"\r\n"),
        "v1 header not ended by CRLF: {}",
        ctx()
    );
    let text = &line[..line.len() - 2];
    assert!(
        !text.contains(&b'\r') && !text.contains(&b'\n'),
        "CR or LF inside v1: {}",
        ctx()
    );
    match header {
        ProxyHeader::Local => assert!(
            text == b"PROXY UNKNOWN" || text.starts_with(b"PROXY UNKNOWN "),
            "v1 Local that is not UNKNOWN: {}",
            ctx()
        ),
        ProxyHeader::Proxied {
            source,
            destination,
        } => {
            if text.starts_with(b"PROXY TCP4 ") {
                assert!(
                    source.is_ipv4() && destination.is_ipv4(),
                    "TCP4 family: {}",
                    ctx()
                );
                let rebuilt = format!(
                    "PROXY TCP4 {} {} {} {}",
                    source.ip(),
                    destination.ip(),
                    source.port(),
                    destination.port()
                );
                assert_eq!(
                    rebuilt.as_bytes(),
                    text,
                    "TCP4 line does not round-trip: {}",
                    ctx()
                );
            } else {
                assert!(text.starts_with(b"PROXY TCP6 "), "v1 family: {}", ctx());
                assert!(
                    source.is_ipv6() && destination.is_ipv6(),
                    "TCP6 family: {}",
                    ctx()
                );
                let ports = format!(" {} {}", source.port(), destination.port());
                assert!(text.ends_with(ports.as_bytes()), "TCP6 ports: {}", ctx());
            }
        }
    }
}

fn check_v2_header(header_bytes: &[u8], header: ProxyHeader, input: &[u8]) {
    let ctx = || format!("proxy: accepted v2 {header:?} from {}", show(input));
    assert!(
        header_bytes.len() >= 16,
        "v2 header under 16 bytes: {}",
        ctx()
    );
    let declared = usize::from(u16::from_be_bytes([header_bytes[14], header_bytes[15]]));
    assert_eq!(header_bytes.len(), 16 + declared, "v2 length: {}", ctx());
    let (version_command, family, body) = (header_bytes[12], header_bytes[13], &header_bytes[16..]);
    assert_eq!(version_command >> 4, 2, "v2 version: {}", ctx());
    let expected = match (version_command & 0x0f, family) {
        (0x0, _) => ProxyHeader::Local,
        (0x1, 0x11) => {
            assert!(body.len() >= 12, "v2 IPv4 block too short: {}", ctx());
            let ip = |at: usize| {
                std::net::IpAddr::from([body[at], body[at + 1], body[at + 2], body[at + 3]])
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            ProxyHeader::Proxied {
                source: (ip(0), port(8)).into(),
                destination: (ip(4), port(10)).into(),
            }
        }
        (0x1, 0x21) => {
            assert!(body.len() >= 36, "v2 IPv6 block too short: {}", ctx());
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                std::net::IpAddr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            ProxyHeader::Proxied {
                source: (ip(0), port(32)).into(),
                destination: (ip(16), port(34)).into(),
            }
        }
        (0x1, 0x00 | 0x12 | 0x22 | 0x31 | 0x32) => ProxyHeader::Local,
        _ => panic!("v2 command/family accepted: {}", ctx()),
    };
    assert_eq!(header, expected, "v2 addresses: {}", ctx());
}

// ---------------------------------------------------------------------------------------------
// Static files: the path resolver

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wizgy_core::files::range::{self as byte_range, Ranges};
use wizgy_core::files::resolve::{self, Opener};

/// A mount directory with symlinks in and out of it and a secret beside it, made once per
/// process, and the (device, inode) of everything beneath it: the only files an open may
/// return.
struct Tree {
    root: std::fs::File,
    inside: HashSet<(u64, u64)>,
    openers: Vec<Opener>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        // One directory for every run, made idempotently (fuzzer jobs may share it): a run
        // leaves nothing new behind.
        let base = std::env::temp_dir().join("wizgy-fuzz-tree");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
        std::fs::create_dir_all(root.join(".well-known")).expect("mkdir");
        std::fs::write(base.join("secret"), "secret").expect("write");
        std::fs::write(root.join("a"), "a").expect("write");
        std::fs::write(root.join("index.html"), "i").expect("write");
        std::fs::write(root.join("sub/b"), "b").expect("write");
        std::fs::write(root.join(".hidden"), "h").expect("write");
        let links: [(&str, PathBuf); 9] = [
            ("in", "a".into()),
            ("out", "../secret".into()),
            ("abs", base.join("secret")),
            ("root", "/".into()),
            ("sub/up", "..".into()),
            ("sub/upup", "../..".into()),
            ("sub/deeper/tricky", "../../sub/../..".into()),
            ("loop", "loop".into()),
            ("magic", "/proc/self/cwd".into()),
        ];
        for (name, target) in links {
            match std::os::unix::fs::symlink(target, root.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("symlink: {e}"),
                _ => {}
            }
        }
        let mut inside = HashSet::new();
        collect_inside(&root, &mut inside);
        let dir = std::fs::File::open(&root).expect("open root");
        let mut openers = vec![Opener::Walk];
        if Opener::probe(dir.as_fd()) == Opener::Openat2 {
            openers.push(Opener::Openat2);
        }
        Tree {
            root: dir,
            inside,
            openers,
        }
    })
}

/// Every file and directory under `dir` (symlinks not followed).
fn collect_inside(dir: &Path, inside: &mut HashSet<(u64, u64)>) {
    let meta = std::fs::symlink_metadata(dir).expect("stat");
    inside.insert((meta.dev(), meta.ino()));
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            collect_inside(&path, inside);
        } else if meta.is_file() {
            inside.insert((meta.dev(), meta.ino()));
        }
    }
}

/// The resolver's invariant: whatever the URL path, (1) what `relative_path` lets through is a
/// plain relative path (no `.`/`..`/empty/hidden segment, no `\`, NUL or control byte), and
/// (2) nothing `open_beneath` opens, for that path or for the raw bytes taken as a path, is
/// outside the mount's directory. Never a panic.
pub fn check_static_path(input: &[u8]) {
    let tree = tree();
    let mut candidates: Vec<String> = Vec::new();
    if let Some(relative) = resolve::relative_path(input) {
        let path = &relative.path;
        assert!(
            !path.starts_with('/') && !path.ends_with('/'),
            "{path:?} from {input:?}"
        );
        for (index, segment) in path.split('/').enumerate() {
            if path.is_empty() {
                break;
            }
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "segment {segment:?} of {path:?} from {input:?}"
            );
            assert!(
                !segment.starts_with('.') || (index == 0 && segment == ".well-known"),
                "hidden segment {segment:?} from {input:?}"
            );
            assert!(
                !segment.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f),
                "{segment:?} from {input:?}"
            );
        }
        candidates.push(relative.path);
    }
    // The raw bytes as a path: the kernel-side layer must hold on its own.
    if let Ok(text) = std::str::from_utf8(input) {
        if !text.contains('\0') && text.len() <= 4096 {
            candidates.push(text.to_owned());
        }
    }
    for path in &candidates {
        for &opener in &tree.openers {
            if let Ok(file) = resolve::open_beneath(tree.root.as_fd(), path, opener) {
                let meta = file.metadata().expect("fstat of an open file");
                assert!(
                    tree.inside.contains(&(meta.dev(), meta.ino())),
                    "{path:?} ({opener:?}) opened something outside the mount, from {input:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Static files: the Range parser

/// Input: `SIZE\nVALUE` (or just VALUE, with its own length as the size). Invariant: a single
/// range lies within the file, is what an independent reading of the value gives, and no
/// decision sends more than the file's bytes. Never a panic.
pub fn check_range(input: &[u8]) {
    let (size, value) = match input.iter().position(|&b| b == b'\n') {
        Some(nl) => match std::str::from_utf8(&input[..nl])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(size) => (size, &input[nl + 1..]),
            None => (input.len() as u64, input),
        },
        None => (input.len() as u64, input),
    };
    match byte_range::parse(value, size) {
        Ranges::Single { start, end } => {
            assert!(
                start <= end && end < size,
                "{start}-{end} of {size} from {input:?}"
            );
            // Independent reading: exactly one satisfiable spec, all specs well-formed.
            let text = std::str::from_utf8(value).expect("a range parsed from ASCII");
            let (unit, set) = text.split_once('=').expect("a parsed range has '='");
            assert!(unit.eq_ignore_ascii_case("bytes"), "{input:?}");
            let specs: Vec<&str> = set
                .split(',')
                .map(|s| s.trim_matches([' ', '\t']))
                .filter(|s| !s.is_empty())
                .collect();
            let hits: Vec<(u64, u64)> = specs
                .iter()
                .filter_map(|s| reference_spec(s, size))
                .collect();
            assert_eq!(hits, vec![(start, end)], "{input:?}");
        }
        Ranges::Unsatisfiable | Ranges::Whole => {}
    }
}

/// A spec's bytes within `size`, by a plain reading of RFC 9110 §14.1.2 (u128: no overflow).
fn reference_spec(spec: &str, size: u64) -> Option<(u64, u64)> {
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u128> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| {
            s.bytes().fold(0u128, |n, d| {
                (n * 10 + u128::from(d - b'0')).min(u128::from(u64::MAX) + 1)
            })
        })
    };
    let size = u128::from(size);
    let (start, end) = if first.is_empty() {
        let length = number(last)?;
        if length == 0 || size == 0 {
            return None;
        }
        (size.saturating_sub(length), size - 1)
    } else {
        let start = number(first)?;
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            number(last)?.min(size.saturating_sub(1))
        };
        if start >= size {
            return None;
        }
        (start, end)
    };
    Some((u64::try_from(start).ok()?, u64::try_from(end).ok()?))
}
