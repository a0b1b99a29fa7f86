//! The chunked transfer coding (RFC 9112 §7.1): a strict incremental decoder and the encoder's
//! framing helpers.
//!
//! The decoder takes bytes from the front of the connection's buffer and yields body pieces; it
//! gives the same result however the input is split. Trailer fields are validated and then
//! discarded: WSGI has no trailer API, and trailers must never reach the environ.

use bytes::{Bytes, BytesMut};

use super::head::is_token;
use super::RequestError;

/// The longest chunk-size line (size plus extensions) accepted, without its CRLF.
const MAX_SIZE_LINE: usize = 4096;
/// The most trailer bytes accepted in total.
const MAX_TRAILER_BYTES: usize = 8192;
/// Chunk sizes are at most 16 hex digits (a u64).
const MAX_SIZE_DIGITS: usize = 16;

/// What the decoder produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A piece of body data.
    Data(Bytes),
    /// The input ends mid-chunk: read more and call again.
    NeedMore,
    /// The last chunk and the trailer section were read; the body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF that ends chunk data.
    DataEnd,
    /// Reading trailer lines (after the last chunk), with this many trailer bytes seen.
    Trailers(usize),
    /// Done.
    End,
}

/// Incremental decoder for one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the whole body (including trailers) has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Decodes from the front of `buf`, returning at most `max` bytes of data at a time.
    pub fn decode(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, RequestError> {
        loop {
            match self.state {
                State::End => return Ok(Decoded::End),
                State::Size => {
                    let Some(line) = take_line(buf, MAX_SIZE_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_size_line(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len())
                        .min(max.max(1));
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(RequestError::BadRequest("chunk data not ended by CRLF"));
                        }
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(RequestError::BadRequest("chunk data not ended by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_TRAILER_BYTES.saturating_sub(seen + 2))?
                    else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::End;
                        return Ok(Decoded::End);
                    }
                    check_trailer(&line)?;
                    self.state = State::Trailers(seen + line.len() + 2);
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line (without the CRLF) from the front of `buf`, refusing bare CR,
/// bare LF and NUL, and lines longer than `max`.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, RequestError> {
    match memchr::memchr3(b'\r', b'\n', 0, buf) {
        Some(i) if buf[i] == b'\r' => {
            if i > max {
                return Err(RequestError::BadRequest("chunk line too long"));
            }
            match buf.get(i + 1) {
                None => Ok(None),
                Some(b'\n') => {
                    let line = buf.split_to(i).freeze();
                    let _ = buf.split_to(2);
                    Ok(Some(line))
                }
                Some(_) => Err(RequestError::BadRequest("bare CR in chunked framing")),
            }
        }
        Some(_) => Err(RequestError::BadRequest(
            "bare LF or NUL in chunked framing",
        )),
        None if buf.len() > max => Err(RequestError::BadRequest("chunk line too long")),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits only (no sign, `0x`, whitespace or `_`), then
/// `;name` or `;name=token` or `;name="quoted"` extensions, which are validated and ignored.
fn parse_size_line(line: &[u8]) -> Result<u64, RequestError> {
    const BAD_SIZE: RequestError = RequestError::BadRequest("invalid chunk size");
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let digits = &line[..digits_end];
    if digits.is_empty() {
        return Err(BAD_SIZE);
    }
    let significant = match digits.iter().position(|&b| b != b'0') {
        Some(i) => &digits[i..],
        None => &b""[..],
    };
    if significant.len() > MAX_SIZE_DIGITS {
        return Err(BAD_SIZE);
    }
    let size = significant.iter().fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).expect("checked hex digit");
        (n << 4) | u64::from(v)
    });
    check_extensions(&line[digits_end..])?;
    Ok(size)
}

/// RFC 9112 §7.1.1 chunk extensions, strictly: no whitespace, names are tokens, values tokens
/// or quoted strings.
fn check_extensions(mut rest: &[u8]) -> Result<(), RequestError> {
    const BAD_EXT: RequestError = RequestError::BadRequest("invalid chunk extension");
    while !rest.is_empty() {
        rest = rest.strip_prefix(b";").ok_or(BAD_EXT)?;
        let name_end = rest
            .iter()
            .position(|&b| b == b'=' || b == b';')
            .unwrap_or(rest.len());
        if !is_token(&rest[..name_end]) {
            return Err(BAD_EXT);
        }
        rest = &rest[name_end..];
        if let Some(value) = rest.strip_prefix(b"=") {
            if let Some(quoted) = value.strip_prefix(b"\"") {
                let mut i = 0;
                loop {
                    match quoted.get(i) {
                        None => return Err(BAD_EXT),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                            match quoted.get(i + 1) {
                                Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => i += 2,
                                _ => return Err(BAD_EXT),
                            }
                        }
                        Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => i += 1,
                        Some(_) => return Err(BAD_EXT),
                    }
                }
                rest = &quoted[i + 1..];
            } else {
                let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
                if !is_token(&value[..end]) {
                    return Err(BAD_EXT);
                }
                rest = &value[end..];
            }
        }
    }
    Ok(())
}

/// A trailer field must be well formed, and must not be a field that frames or routes the
/// message (RFC 9110 §6.5.1).
fn check_trailer(line: &[u8]) -> Result<(), RequestError> {
    const BAD: RequestError = RequestError::BadRequest("invalid trailer field");
    let colon = memchr::memchr(b':', line).ok_or(BAD)?;
    let name = &line[..colon];
    if !is_token(name) {
        return Err(BAD);
    }
    let value = &line[colon + 1..];
    if value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(BAD);
    }
    for forbidden in ["content-length", "transfer-encoding", "host", "trailer"] {
        if name.eq_ignore_ascii_case(forbidden.as_bytes()) {
            return Err(RequestError::BadRequest("forbidden trailer field"));
        }
    }
    Ok(())
}

/// Writes the framing that precedes a chunk of `len` bytes (`len` in hex, CRLF).
pub fn encode_chunk_size(out: &mut BytesMut, len: usize) {
    // By hand: `write!(out, "{len:X}\r\n")` went through fmt's machinery, ~200 instructions
    // per chunk (a generator of 100 chunks: 8 % of the worker's user-space instructions).
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut line = [0u8; 2 * std::mem::size_of::<usize>() + 2];
    let mut at = line.len() - 2;
    line[at..].copy_from_slice(b"\r\n");
    let mut rest = len;
    loop {
        at -= 1;
        line[at] = HEX[rest & 0xF];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&line[at..]);
}

/// The bytes that end a chunked body: the last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_upper_case_hex_lines() {
        for (len, line) in [
            (0usize, "0\r\n"),
            (1, "1\r\n"),
            (15, "F\r\n"),
            (16, "10\r\n"),
            (10240, "2800\r\n"),
            (0xABCDEF, "ABCDEF\r\n"),
            (usize::MAX, "FFFFFFFFFFFFFFFF\r\n"),
        ] {
            let mut out = BytesMut::from(&b"x"[..]);
            encode_chunk_size(&mut out, len);
            assert_eq!(&out[..], format!("x{line}").as_bytes(), "{len}");
        }
    }

    /// Decodes `input` fed in pieces of `step` bytes; returns the body or the error status.
    fn decode_split(input: &[u8], step: usize) -> Result<Vec<u8>, u16> {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf, 7) {
                    Ok(Decoded::Data(d)) => body.extend_from_slice(&d),
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::End) => return Ok(body),
                    Err(e) => return Err(e.status().0),
                }
            }
        }
        Err(0) // incomplete
    }

    #[test]
    fn valid_bodies_decode_identically_however_split() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (
                b"5;ext\r\nhello\r\n6;a=b;c=\"d;\\\"e\"\r\n world\r\n0\r\n\r\n",
                b"hello world",
            ),
            (
                b"000A\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n",
                b"0123456789",
            ),
            (b"a\r\n0123456789\r\n00\r\n\r\n", b"0123456789"),
        ];
        for (input, expected) in cases {
            for step in 1..=input.len() {
                assert_eq!(
                    decode_split(input, step),
                    Ok(expected.to_vec()),
                    "step {step} for {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn malformed_chunking_is_a_400_however_split() {
        let cases: &[&[u8]] = &[
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"6_0\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a = b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\nContent-Length: 5\r\n\r\n",
            b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"0\r\nHost: evil\r\n\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
        ];
        for input in cases {
            for step in 1..=input.len() {
                assert_eq!(
                    decode_split(input, step),
                    Err(400),
                    "step {step} for {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn missing_final_crlf_is_incomplete_not_a_body() {
        assert_eq!(decode_split(b"5\r\nhello\r\n0\r\n", 3), Err(0));
    }

    #[test]
    fn leading_zeros_do_not_count_against_the_digit_limit() {
        assert_eq!(
            decode_split(b"00000000000000000000001\r\na\r\n0\r\n\r\n", 4),
            Ok(b"a".to_vec())
        );
    }

    #[test]
    fn chunk_size_is_encoded_in_hex() {
        let mut out = BytesMut::new();
        encode_chunk_size(&mut out, 255);
        assert_eq!(&out[..], b"FF\r\n");
    }
}
