//! The access log's lines: `--access-log-format`, parsed once at start into gunicorn's atoms
//! (`%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"` and the rest) or `json`, and
//! the record an exchange leaves behind, formatted on the access log's own thread.
//!
//! What the client sent is never dropped and never breaks a line: bytes that are not UTF-8 are
//! written as `\xNN` (Python's `backslashreplace`); in the text formats control bytes are too;
//! JSON strings escape them as JSON does, so every JSON line parses. Opening the file and the
//! writer thread are [`crate::logging`]'s.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use crate::exchange::PeerAddr;
use crate::http1::response::ResponseHead;
use crate::http1::RequestHead;

/// gunicorn's default access-log format.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The environ keys the core knows (the rest of the environ is built by the app side, and what
/// middleware adds is not known to the server at all); `HTTP_*` names are request headers.
const ENVIRON_KEYS: [&str; 7] = [
    "REMOTE_ADDR",
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "CONTENT_TYPE",
];

/// One atom of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// `h`: the client's address (`-` for a unix-socket peer).
    Remote,
    /// `l`: always `-` (identd).
    Dash,
    /// `u`: the user of a `Basic` Authorization, else `-`.
    User,
    /// `t`: `[06/Dec/2026:22:30:00 +0000]`.
    Time,
    /// `r`: the request line.
    RequestLine,
    /// `s`: the status.
    Status,
    /// `b` and `B`: the response body bytes sent.
    Bytes,
    /// `f`: Referer.
    Referer,
    /// `a`: User-Agent.
    UserAgent,
    /// `T`: whole seconds; `M` milliseconds; `D` microseconds; `L` decimal seconds.
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    /// `p`: `<PID>`.
    Pid,
    /// `m`, `U`, `q`, `H`: method, path, query, protocol.
    Method,
    Path,
    Query,
    Protocol,
    /// `{name}i`: a request header (the index into [`Format::request_fields`]).
    RequestHeader(usize),
    /// `{name}o`: a response header (the index into [`Format::response_fields`]).
    ResponseHeader(usize),
    /// `{name}e`: an environ key the core knows.
    Environ(Environ),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Environ {
    RemoteAddr,
    Method,
    PathInfo,
    Query,
    RawUri,
    Protocol,
    /// CONTENT_TYPE, CONTENT_LENGTH or HTTP_*: a request header.
    Header(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Atom(Atom),
}

/// A parsed `--access-log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    kind: Kind,
    /// Request header names (lower case) the format shows, in the order of their indices.
    request_fields: Vec<String>,
    /// Response header names (lower case) the format shows.
    response_fields: Vec<String>,
    /// `--root-path`, removed from the front of PATH_INFO as the app side does.
    root_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Pieces(Vec<Piece>),
    Json,
}

impl Default for Format {
    fn default() -> Self {
        Format::parse(DEFAULT_FORMAT).expect("the default format parses")
    }
}

impl Format {
    /// Parses a format: `json`, or text with gunicorn's `%(atom)s` (`%%` is a `%`).
    pub fn parse(text: &str) -> Result<Format, String> {
        let mut format = Format {
            kind: Kind::Json,
            request_fields: Vec::new(),
            response_fields: Vec::new(),
            root_path: String::new(),
        };
        if text.trim() == "json" {
            for name in ["user-agent", "referer", "x-request-id"] {
                format.request_field(name);
            }
            return Ok(format);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            let Some(inner) = after.strip_prefix('(') else {
                return Err(format!(
                    "{text:?}: a % must start an atom such as %(h)s (%% is a %)"
                ));
            };
            let Some(close) = inner.find(')') else {
                return Err(format!("{text:?}: %( is not closed"));
            };
            let name = &inner[..close];
            let tail = &inner[close + 1..];
            let Some(tail) = tail.strip_prefix('s').or_else(|| tail.strip_prefix('d')) else {
                return Err(format!(
                    "{text:?}: %({name}) must be followed by s, as in %({name})s"
                ));
            };
            let atom = format.atom(name)?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Atom(atom));
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        format.kind = Kind::Pieces(pieces);
        if format.needs(&Atom::User) {
            format.request_field("authorization");
        }
        Ok(format)
    }

    /// With `--root-path` (PATH_INFO does not start with it).
    pub fn with_root_path(mut self, root_path: &str) -> Self {
        self.root_path = root_path.to_owned();
        self
    }

    fn needs(&self, atom: &Atom) -> bool {
        matches!(&self.kind, Kind::Pieces(p) if p.contains(&Piece::Atom(atom.clone())))
    }

    fn request_field(&mut self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        match self.request_fields.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.request_fields.push(name);
                self.request_fields.len() - 1
            }
        }
    }

    fn atom(&mut self, name: &str) -> Result<Atom, String> {
        let braced = name
            .strip_prefix('{')
            .and_then(|n| n.rsplit_once('}'))
            .filter(|(n, _)| !n.is_empty());
        if let Some((field, kind)) = braced {
            return match kind {
                "i" => Ok(Atom::RequestHeader(self.request_field(field))),
                "o" => {
                    let field = field.to_ascii_lowercase();
                    let index = match self.response_fields.iter().position(|n| *n == field) {
                        Some(i) => i,
                        None => {
                            self.response_fields.push(field);
                            self.response_fields.len() - 1
                        }
                    };
                    Ok(Atom::ResponseHeader(index))
                }
                "e" => self.environ(field).map(Atom::Environ),
                _ => Err(format!(
                    "%({name})s: {{NAME}} is followed by i (request header), o (response \
                     header) or e (environ key)"
                )),
            };
        }
        Ok(match name {
            "h" => Atom::Remote,
            "l" => Atom::Dash,
            "u" => Atom::User,
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "s" => Atom::Status,
            "b" | "B" => Atom::Bytes,
            "f" => {
                self.request_field("referer");
                Atom::Referer
            }
            "a" => {
                self.request_field("user-agent");
                Atom::UserAgent
            }
            "T" => Atom::Seconds,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::DecimalSeconds,
            "p" => Atom::Pid,
            "m" => Atom::Method,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            _ => {
                return Err(format!(
                    "%({name})s: no such atom (gunicorn's: h l u t r s b B f a T M D L p m U q \
                     H, {{header}}i, {{header}}o, {{key}}e)"
                ))
            }
        })
    }

    fn environ(&mut self, key: &str) -> Result<Environ, String> {
        let upper = key.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "REMOTE_ADDR" => Environ::RemoteAddr,
            "REQUEST_METHOD" => Environ::Method,
            "PATH_INFO" => Environ::PathInfo,
            "QUERY_STRING" => Environ::Query,
            "RAW_URI" | "REQUEST_URI" => Environ::RawUri,
            "SERVER_PROTOCOL" => Environ::Protocol,
            "CONTENT_TYPE" => Environ::Header(self.request_field("content-type")),
            "CONTENT_LENGTH" => Environ::Header(self.request_field("content-length")),
            _ => match upper.strip_prefix("HTTP_").filter(|n| !n.is_empty()) {
                Some(name) => Environ::Header(self.request_field(&name.replace('_', "-"))),
                None => {
                    return Err(format!(
                        "%({{{key}}}e)s: the access log is written by the server, which knows {}, \
                         CONTENT_LENGTH and HTTP_*; what the app side or middleware puts in the \
                         environ is not available to it",
                        ENVIRON_KEYS.join(", ")
                    ))
                }
            },
        })
    }

    /// Whether any atom shows a response header (the response head is then looked at).
    pub fn wants_response_fields(&self) -> bool {
        !self.response_fields.is_empty()
    }
}

/// What one exchange leaves for its access-log line: the parts of the request the format
/// shows, copied into one buffer (the request head itself shares the connection's read
/// buffer, which must not be held while the line waits for the log thread).
#[derive(Debug)]
pub struct Record {
    /// method, target, then each wanted request field's value (`None`: absent).
    bytes: Vec<u8>,
    method_len: usize,
    target_len: usize,
    request_fields: Vec<Option<(usize, usize)>>,
    response_fields: Vec<Option<Vec<u8>>>,
    protocol: &'static str,
    peer: PeerAddr,
    started: SystemTime,
    clock: Instant,
    /// Set when the exchange ends.
    pub(crate) status: u16,
    pub(crate) body_bytes: u64,
    pub(crate) duration: Duration,
}

impl Record {
    pub fn new(format: &Format, head: &RequestHead, peer: PeerAddr) -> Self {
        let method = head.method();
        let target = head.target();
        let mut bytes = Vec::with_capacity(method.len() + target.len() + 64);
        bytes.extend_from_slice(method);
        bytes.extend_from_slice(target);
        let request_fields = format
            .request_fields
            .iter()
            .map(|name| {
                head.field(name).map(|value| {
                    let start = bytes.len();
                    bytes.extend_from_slice(value);
                    (start, bytes.len())
                })
            })
            .collect();
        Record {
            method_len: method.len(),
            target_len: target.len(),
            bytes,
            request_fields,
            response_fields: vec![None; format.response_fields.len()],
            protocol: head.version.as_str(),
            peer,
            started: SystemTime::now(),
            clock: Instant::now(),
            status: 0,
            body_bytes: 0,
            duration: Duration::ZERO,
        }
    }

    /// Keeps the response fields the format shows.
    pub fn response_head(&mut self, format: &Format, head: &ResponseHead) {
        for (index, wanted) in format.response_fields.iter().enumerate() {
            self.response_fields[index] = head
                .fields()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
                .map(|(_, value)| value.to_vec());
        }
    }

    /// The exchange ended with `status` and `body_bytes` sent.
    pub fn finish(&mut self, status: u16, body_bytes: u64) {
        self.status = status;
        self.body_bytes = body_bytes;
        self.duration = self.clock.elapsed();
    }

    /// Bytes held, for the log queue's bound.
    pub fn size(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Record>()
    }

    fn method(&self) -> &[u8] {
        &self.bytes[..self.method_len]
    }

    fn target(&self) -> &[u8] {
        &self.bytes[self.method_len..self.method_len + self.target_len]
    }

    fn field(&self, index: usize) -> Option<&[u8]> {
        self.request_fields
            .get(index)
            .copied()
            .flatten()
            .map(|(start, end)| &self.bytes[start..end])
    }

    fn path_and_query(&self) -> (&[u8], &[u8]) {
        let target = self.target();
        let target = target.split(|&b| b == b'#').next().unwrap_or(target);
        match target.iter().position(|&b| b == b'?') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, b""),
        }
    }

    fn remote(&self) -> Option<String> {
        match self.peer {
            PeerAddr::Ip(addr) => Some(addr.ip().to_string()),
            PeerAddr::Reported(ip) => Some(ip.to_string()),
            PeerAddr::Unix => None,
        }
    }

    /// The user of a `Basic` Authorization field (gunicorn's `u`).
    fn user(&self, format: &Format) -> Option<String> {
        use base64::Engine as _;
        let index = format
            .request_fields
            .iter()
            .position(|n| n == "authorization")?;
        let value = self.field(index)?;
        let value = std::str::from_utf8(value).ok()?.trim();
        let (scheme, credentials) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()?;
        let user = decoded.split(|&b| b == b':').next()?;
        Some(text(user).into_owned())
    }

    /// Appends this record's line (with its newline) to `out`.
    pub fn write_line(&self, format: &Format, out: &mut String) {
        match &format.kind {
            Kind::Json => self.write_json(out),
            Kind::Pieces(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Text(literal) => out.push_str(literal),
                        Piece::Atom(atom) => self.write_atom(format, atom, out),
                    }
                }
                out.push('\n');
            }
        }
    }

    fn write_atom(&self, format: &Format, atom: &Atom, out: &mut String) {
        let shown = |out: &mut String, bytes: Option<&[u8]>| match bytes {
            Some(bytes) => out.push_str(&text(bytes)),
            None => out.push('-'),
        };
        let duration = self.duration;
        let _ = match atom {
            Atom::Remote => {
                out.push_str(self.remote().as_deref().unwrap_or("-"));
                Ok(())
            }
            Atom::Dash => {
                out.push('-');
                Ok(())
            }
            Atom::User => {
                out.push_str(self.user(format).as_deref().unwrap_or("-"));
                Ok(())
            }
            Atom::Time => write!(out, "[{}]", crate::logging::common_log_time(self.started)),
            Atom::RequestLine => {
                out.push_str(&text(self.method()));
                out.push(' ');
                out.push_str(&text(self.target()));
                out.push(' ');
                out.push_str(self.protocol);
                Ok(())
            }
            Atom::Status => write!(out, "{}", self.status),
            Atom::Bytes => write!(out, "{}", self.body_bytes),
            Atom::Referer => {
                shown(out, self.named(format, "referer"));
                Ok(())
            }
            Atom::UserAgent => {
                shown(out, self.named(format, "user-agent"));
                Ok(())
            }
            Atom::Seconds => write!(out, "{}", duration.as_secs()),
            Atom::Millis => write!(out, "{}", duration.as_millis()),
            Atom::Micros => write!(out, "{}", duration.as_micros()),
            Atom::DecimalSeconds => write!(
                out,
                "{}.{:06}",
                duration.as_secs(),
                duration.subsec_micros()
            ),
            Atom::Pid => write!(out, "<{}>", std::process::id()),
            Atom::Method => {
                out.push_str(&text(self.method()));
                Ok(())
            }
            Atom::Path => {
                out.push_str(&text(self.path_and_query().0));
                Ok(())
            }
            Atom::Query => {
                out.push_str(&text(self.path_and_query().1));
                Ok(())
            }
            Atom::Protocol => {
                out.push_str(self.protocol);
                Ok(())
            }
            Atom::RequestHeader(index) => {
                shown(out, self.field(*index));
                Ok(())
            }
            Atom::ResponseHeader(index) => {
                shown(
                    out,
                    self.response_fields.get(*index).and_then(|v| v.as_deref()),
                );
                Ok(())
            }
            Atom::Environ(key) => {
                match key {
                    Environ::RemoteAddr => out.push_str(self.remote().as_deref().unwrap_or("-")),
                    Environ::Method => out.push_str(&text(self.method())),
                    Environ::PathInfo => {
                        let decoded = crate::cgi::percent_decode(self.path_and_query().0);
                        let path = decoded
                            .strip_prefix(format.root_path.as_bytes())
                            .filter(|rest| rest.is_empty() || rest.starts_with(b"/"))
                            .unwrap_or(&decoded);
                        out.push_str(&text(path));
                    }
                    Environ::Query => out.push_str(&text(self.path_and_query().1)),
                    Environ::RawUri => out.push_str(&text(self.target())),
                    Environ::Protocol => out.push_str(self.protocol),
                    Environ::Header(index) => shown(out, self.field(*index)),
                }
                Ok(())
            }
        };
    }

    /// A request field the format gathered by name.
    fn named(&self, format: &Format, name: &str) -> Option<&[u8]> {
        let index = format.request_fields.iter().position(|n| n == name)?;
        self.field(index)
    }

    fn write_json(&self, out: &mut String) {
        let (path, query) = self.path_and_query();
        let string = |out: &mut String, bytes: &[u8]| json_string(bytes, out);
        let optional = |out: &mut String, bytes: Option<&[u8]>| match bytes {
            Some(bytes) => string(out, bytes),
            None => out.push_str("null"),
        };
        out.push_str("{\"time\":\"");
        rfc3339(self.started, out);
        out.push_str("\",\"client\":");
        let _ = match self.peer {
            PeerAddr::Ip(addr) => write!(out, "\"{}\"", addr.ip()),
            PeerAddr::Reported(ip) => write!(out, "\"{ip}\""),
            PeerAddr::Unix => write!(out, "null"),
        };
        out.push_str(",\"method\":");
        string(out, self.method());
        out.push_str(",\"path\":");
        string(out, path);
        out.push_str(",\"query\":");
        string(out, query);
        let _ = write!(
            out,
            ",\"protocol\":\"{}\",\"status\":{},\"bytes\":{},\"duration\":{}.{:06}",
            self.protocol,
            self.status,
            self.body_bytes,
            self.duration.as_secs(),
            self.duration.subsec_micros()
        );
        // The JSON format gathers these three, in this order (see Format::parse).
        out.push_str(",\"user_agent\":");
        optional(out, self.field(0));
        out.push_str(",\"referer\":");
        optional(out, self.field(1));
        out.push_str(",\"request_id\":");
        optional(out, self.field(2));
        out.push_str("}\n");
    }
}

/// Appends JSON text with every non-ASCII character as a `\uXXXX` escape (Python's
/// `ensure_ascii`): a line then holds nothing a line-oriented tool could take for a line break
/// (U+2028, U+0085) or mangle by its own idea of the encoding.
fn ascii_only(json: &str, out: &mut String) {
    if json.is_ascii() {
        out.push_str(json);
        return;
    }
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
}

/// Bytes as text for a text line: UTF-8 as it is, other bytes and control characters as
/// `\xNN`, so a line can be neither split nor turned into terminal commands.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return std::borrow::Cow::Borrowed(
            std::str::from_utf8(bytes).expect("printable ASCII is UTF-8"),
        );
    }
    let decoded = backslash_replace(bytes);
    if !decoded.chars().any(char::is_control) {
        return std::borrow::Cow::Owned(decoded);
    }
    let mut out = String::with_capacity(decoded.len() + 8);
    for c in decoded.chars() {
        if c.is_control() && (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Python's `bytes.decode("utf-8", "backslashreplace")`: each byte that is not part of valid
/// UTF-8 becomes `\xNN`.
pub fn backslash_replace(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Appends `bytes` as a JSON string: as it is when it is plain printable ASCII (the usual
/// case, no allocation), else escaped by serde_json and made ASCII-only.
fn json_string(bytes: &[u8], out: &mut String) {
    let plain = bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(std::str::from_utf8(bytes).expect("printable ASCII is UTF-8"));
        out.push('"');
        return;
    }
    let value = backslash_replace(bytes);
    let json = serde_json::to_string(&value).expect("a string serializes to JSON");
    ascii_only(&json, out);
}

/// Appends `2026-12-06T22:30:00.123456Z`.
fn rfc3339(time: SystemTime, out: &mut String) {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (year, month, day, rem) = crate::logging::civil_date(since.as_secs());
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{Framing, Version};

    fn head(target: &str, fields: &[(&[u8], &[u8])]) -> RequestHead {
        RequestHead::assemble(
            b"GET",
            target.as_bytes(),
            fields.iter().copied(),
            Version::Http11,
            Framing::None,
        )
    }

    fn line(format: &str, head: &RequestHead) -> String {
        let format = Format::parse(format).expect("a valid format");
        let peer = PeerAddr::Ip("10.1.2.3:4567".parse().expect("an address"));
        let mut record = Record::new(&format, head, peer);
        record.status = 201;
        record.body_bytes = 42;
        record.duration = Duration::from_micros(1_234_567);
        let mut out = String::new();
        record.write_line(&format, &mut out);
        out
    }

    #[test]
    fn atoms_render_as_gunicorn_does() {
        let head = head(
            "/a%20b?x=1",
            &[
                (b"user-agent", b"curl/8"),
                (b"authorization", b"Basic YWxpY2U6c2VjcmV0"),
                (b"x-thing", b"v"),
            ],
        );
        let cases = [
            ("%(h)s %(l)s %(u)s", "10.1.2.3 - alice"),
            ("%(r)s", "GET /a%20b?x=1 HTTP/1.1"),
            ("%(s)s %(b)s %(B)s", "201 42 42"),
            ("%(f)s|%(a)s", "-|curl/8"),
            ("%(T)s %(M)s %(D)s %(L)s", "1 1234 1234567 1.234567"),
            ("%(m)s %(U)s %(q)s %(H)s", "GET /a%20b x=1 HTTP/1.1"),
            ("%({X-Thing}i)s %({x-missing}i)s", "v -"),
            ("%({PATH_INFO}e)s %({http_x_thing}e)s", "/a b v"),
            ("100%% %(s)d", "100% 201"),
        ];
        for (format, expected) in cases {
            assert_eq!(line(format, &head), format!("{expected}\n"), "{format}");
        }
        assert_eq!(line("%(p)s", &head), format!("<{}>\n", std::process::id()));
        assert!(line("%(t)s", &head).starts_with('['));
    }

    #[test]
    fn a_bad_format_is_refused_at_start() {
        for bad in [
            "%(zz)s",
            "%(h)",
            "%(h",
            "50%",
            "%({wsgi.input}e)s",
            "%({x}z)s",
        ] {
            assert!(Format::parse(bad).is_err(), "{bad}");
        }
        assert!(Format::parse(DEFAULT_FORMAT).is_ok());
    }

    #[test]
    fn hostile_bytes_are_escaped_never_dropped() {
        let head = head("/q\"\\", &[(b"user-agent", b"a\"b\\c\x01d\xffe\xc3\xa9")]);
        let text_line = line("%(a)s", &head);
        assert_eq!(text_line, "a\"b\\c\\x01d\\xffe\u{e9}\n");
        let json = line("json", &head);
        assert!(
            json.ends_with("}\n") && json.matches('\n').count() == 1,
            "{json}"
        );
        assert!(
            json.contains(r#""user_agent":"a\"b\\c\u0001d\\xffe\u00e9""#),
            "{json}"
        );
        assert!(json.is_ascii(), "{json}");
        assert!(json.contains(r#""path":"/q\"\\""#), "{json}");
        assert!(json.contains(r#""request_id":null"#), "{json}");
        assert!(
            json.contains(r#""status":201,"bytes":42,"duration":1.234567"#),
            "{json}"
        );
    }
}
