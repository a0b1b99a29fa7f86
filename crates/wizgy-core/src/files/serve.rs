//! The reply of a static mount to one GET or HEAD: which file (or precompressed sibling),
//! which status and which header fields. Opening files is the only I/O here; the connection
//! sends the reply.
//!
//! `None` from [`StaticFiles::respond`] means "no servable file": the request falls through
//! to the app, as uWSGI's `--static-map`, whitenoise and nginx's `try_files` do.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::conditional::{self, Decision, Validators};
use super::range::{self, Ranges};
use super::resolve::{self, RelativePath};
use super::{StaticFiles, StaticMount};
use crate::http1::response::ResponseHead;
use crate::http1::RequestHead;

/// What a static mount answers.
#[derive(Debug)]
pub struct Reply {
    /// Status and fields, Content-Length included (the connection writes the framing).
    pub head: ResponseHead,
    /// The bytes to send with sendfile; `None` for a reply without a body (301, 304, 412, 416).
    pub body: Option<FileBody>,
}

/// `len` bytes of `file` from `offset`.
#[derive(Debug)]
pub struct FileBody {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// A precompressed sibling, in the server's order of preference for equal q-values (smallest
/// output first): (Content-Encoding, file suffix).
const SIBLINGS: [(&str, &str); 3] = [("br", ".br"), ("zstd", ".zst"), ("gzip", ".gz")];

/// Extensions of formats that are compressed already, beside which no precompressed sibling
/// is looked for (nor remembered in the [`SiblingCache`]): whitenoise's list of what its
/// compressor skips (plus avif, mp3 and zst), because nobody makes them.
const COMPRESSED_ALREADY: [&str; 30] = [
    "jpg", "jpeg", "png", "gif", "webp", "avif", "zip", "gz", "tgz", "bz2", "tbz", "xz", "br",
    "zst", "swf", "flv", "woff", "woff2", "3gp", "3gpp", "asf", "avi", "m4v", "mov", "mp4", "mpeg",
    "mpg", "webm", "wmv", "mp3",
];

/// Whether `path` may have `.br`/`.zst`/`.gz` siblings worth looking for.
fn may_have_siblings(path: &str) -> bool {
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    !COMPRESSED_ALREADY
        .iter()
        .any(|known| known.eq_ignore_ascii_case(extension))
}

/// The precompressed siblings seen beside recently served files, per mount, so that a hit
/// does not look for them every time: three failed opens per hit made a 1 KiB `.css` 9
/// system calls instead of 6 (bench/static.sh, before the head went with MSG_MORE: 0.61-0.71x
/// nginx's req/s per core; 0.80-0.81x with this cache). What was seen holds for [`SiblingCache::FRESH`]
/// and only while the file itself is unchanged (inode, mtime, size), so a deployment that
/// replaces `app.js` and its `app.js.br` is seen at once; a sibling added beside an unchanged
/// file is seen within a second. nginx's `open_file_cache` (off by default) caches whole
/// lookups for 60 s.
#[derive(Debug, Default)]
pub struct SiblingCache(Mutex<HashMap<String, Seen>>);

#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    /// The file's inode, mtime (seconds, nanoseconds) and size when its siblings were looked for.
    version: (u64, i64, i64, u64),
    /// Bit `i`: `SIBLINGS[i]` existed.
    found: u8,
}

impl SiblingCache {
    /// How long a look holds.
    const FRESH: Duration = Duration::from_secs(1);
    /// Files remembered per mount at most; past it the cache starts afresh (4096 entries
    /// are ~0.3 MiB).
    const MAX: usize = 4096;

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, path: &str, meta: &Metadata) -> Option<u8> {
        let seen = *self.lock().get(path)?;
        (seen.version == version(meta) && seen.at.elapsed() < Self::FRESH).then_some(seen.found)
    }

    fn put(&self, path: &str, meta: &Metadata, found: u8) {
        let mut map = self.lock();
        if map.len() >= Self::MAX && !map.contains_key(path) {
            map.clear();
        }
        let seen = Seen {
            at: Instant::now(),
            version: version(meta),
            found,
        };
        map.insert(path.to_owned(), seen);
    }
}

fn version(meta: &Metadata) -> (u64, i64, i64, u64) {
    (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.size())
}

/// The one file a directory URL serves.
const INDEX: &str = "index.html";

impl StaticFiles {
    /// The reply for `head` if it is a GET or HEAD under a mount that names a servable file;
    /// `None` otherwise (the app answers). Costs no system call when no mount matches.
    pub fn respond(&self, head: &RequestHead) -> Option<Reply> {
        if self.mounts.is_empty() {
            return None;
        }
        let method = head.method();
        if method != b"GET" && method != b"HEAD" {
            return None;
        }
        let (path, query) = head.path_and_query();
        let (mount, rest) = self.lookup(path)?;
        let relative = resolve::relative_path(rest)?;
        self.reply(mount, &relative, head, path, query)
    }

    fn open(&self, mount: &StaticMount, path: &str) -> Option<(File, std::fs::Metadata)> {
        let file = resolve::open_beneath(mount.root.as_fd(), path, self.opener).ok()?;
        let meta = file.metadata().ok()?;
        Some((file, meta))
    }

    /// A regular file at `path`, or `None`.
    fn open_file(&self, mount: &StaticMount, path: &str) -> Option<(File, std::fs::Metadata)> {
        self.open(mount, path).filter(|(_, meta)| meta.is_file())
    }

    /// Which of the [`SIBLINGS`] of `path` exist now: bit `i` for `SIBLINGS[i]`.
    fn probe_siblings(&self, mount: &StaticMount, path: &str) -> u8 {
        SIBLINGS
            .iter()
            .enumerate()
            .filter(|(_, (_, suffix))| self.open_file(mount, &format!("{path}{suffix}")).is_some())
            .fold(0, |found, (i, _)| found | 1 << i)
    }

    fn reply(
        &self,
        mount: &StaticMount,
        relative: &RelativePath,
        head: &RequestHead,
        url_path: &[u8],
        query: &[u8],
    ) -> Option<Reply> {
        let (file, meta) = self.open(mount, &relative.path)?;
        let (path, file, meta) = if meta.is_dir() {
            let index = if relative.path.is_empty() {
                INDEX.to_owned()
            } else {
                format!("{}/{INDEX}", relative.path)
            };
            drop(file);
            let (file, meta) = self.open_file(mount, &index)?;
            if !relative.trailing_slash {
                // A directory named without its slash: its relative links would resolve
                // against the parent, so send the client to the slashed URL (query kept).
                return Some(redirect(url_path, query));
            }
            (index, file, meta)
        } else if meta.is_file() && !relative.trailing_slash {
            (relative.path.clone(), file, meta)
        } else {
            return None;
        };
        let content_type = content_type(&path);
        let accepted = accepted_codings(head.field("accept-encoding"));
        let found = if may_have_siblings(&path) {
            mount.siblings.get(&path, &meta).unwrap_or_else(|| {
                let found = self.probe_siblings(mount, &path);
                mount.siblings.put(&path, &meta, found);
                found
            })
        } else {
            0
        };
        let mut chosen: Option<(&str, File, std::fs::Metadata)> = None;
        for i in by_preference(&accepted) {
            if found & (1 << i) == 0 || accepted[i] == 0 {
                continue;
            }
            let (coding, suffix) = SIBLINGS[i];
            // Gone since it was seen: the next one, or the file itself.
            if let Some((sibling, sibling_meta)) = self.open_file(mount, &format!("{path}{suffix}"))
            {
                chosen = Some((coding, sibling, sibling_meta));
                break;
            }
        }
        let (encoding, file, meta) = match chosen {
            Some((coding, sibling, sibling_meta)) => (Some(coding), sibling, sibling_meta),
            None => (None, file, meta),
        };
        let representation = Representation {
            etag: etag(&meta, encoding),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            size: meta.len(),
            content_type,
            encoding,
            vary: found != 0,
            max_age: self.max_age.map(|age| age.as_secs()),
        };
        Some(representation.reply(head, file))
    }
}

/// The representation chosen for a request, with what its header fields need.
struct Representation<'a> {
    etag: String,
    modified: SystemTime,
    size: u64,
    content_type: String,
    encoding: Option<&'a str>,
    /// A precompressed sibling exists: the reply depends on Accept-Encoding.
    vary: bool,
    max_age: Option<u64>,
}

impl Representation<'_> {
    fn reply(&self, head: &RequestHead, file: File) -> Reply {
        let modified = conditional::seconds(self.modified);
        let validators = Validators {
            etag: &self.etag,
            modified,
        };
        match conditional::evaluate(head, validators) {
            Decision::NotModified => return self.bodiless("304 Not Modified", &[]),
            Decision::Failed => {
                return self.bodiless("412 Precondition Failed", &[("Content-Length", "0".into())])
            }
            Decision::Send => {}
        }
        let ranges = match head.field("range") {
            Some(value) if conditional::range_applies(head, validators) => {
                range::parse(value, self.size)
            }
            _ => Ranges::Whole,
        };
        let (status, offset, len, content_range) = match ranges {
            Ranges::Whole => ("200 OK", 0, self.size, None),
            Ranges::Single { start, end } => (
                "206 Partial Content",
                start,
                end - start + 1,
                Some(format!("bytes {start}-{end}/{}", self.size)),
            ),
            Ranges::Unsatisfiable => {
                let fields = [
                    ("Content-Range", format!("bytes */{}", self.size)),
                    ("Content-Length", "0".into()),
                ];
                return self.bodiless("416 Range Not Satisfiable", &fields);
            }
        };
        let mut reply = self.head(status);
        push(&mut reply, "Content-Type", &self.content_type);
        if let Some(coding) = self.encoding {
            push(&mut reply, "Content-Encoding", coding);
        }
        if let Some(range) = &content_range {
            push(&mut reply, "Content-Range", range);
        }
        push(
            &mut reply,
            "Content-Length",
            itoa::Buffer::new().format(len),
        );
        Reply {
            head: reply,
            body: Some(FileBody { file, offset, len }),
        }
    }

    /// The fields every reply about this representation carries (RFC 9110 §15.4.5: a 304
    /// carries the validators, Cache-Control and Vary a 200 would have).
    fn head(&self, status: &str) -> ResponseHead {
        let mut head = ResponseHead::new(status).expect("a fixed, valid status");
        push(
            &mut head,
            "Last-Modified",
            &httpdate::fmt_http_date(self.modified),
        );
        push(&mut head, "ETag", &self.etag);
        push(&mut head, "Accept-Ranges", "bytes");
        if let Some(age) = self.max_age {
            push(
                &mut head,
                "Cache-Control",
                &format!("public, max-age={age}"),
            );
        }
        if self.vary {
            push(&mut head, "Vary", "Accept-Encoding");
        }
        head
    }

    fn bodiless(&self, status: &str, fields: &[(&str, String)]) -> Reply {
        let mut head = self.head(status);
        for (name, value) in fields {
            push(&mut head, name, value);
        }
        Reply { head, body: None }
    }
}

/// Adds a field wizgy composed itself (ASCII, no control bytes: it cannot be refused).
fn push(head: &mut ResponseHead, name: &str, value: &str) {
    head.push(name, value)
        .expect("fields composed by the server are valid");
}

/// 301 to the URL with a `/` added, the query kept; bytes that are not printable ASCII are
/// percent-encoded so the Location is a valid field value.
fn redirect(url_path: &[u8], query: &[u8]) -> Reply {
    let mut location = String::with_capacity(url_path.len() + query.len() + 2);
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            if b.is_ascii_graphic() {
                location.push(char::from(b));
            } else {
                location.push_str(&format!("%{b:02X}"));
            }
        }
    };
    add(url_path);
    add(b"/");
    if !query.is_empty() {
        add(b"?");
        add(query);
    }
    let mut head = ResponseHead::new("301 Moved Permanently").expect("a fixed, valid status");
    push(&mut head, "Location", &location);
    push(&mut head, "Content-Length", "0");
    Reply { head, body: None }
}

/// A strong ETag from what changes when the file does: inode, modification time to the
/// nanosecond, size; and the coding of a precompressed sibling (its own representation,
/// RFC 9110 §8.8.3).
fn etag(meta: &std::fs::Metadata, encoding: Option<&str>) -> String {
    let suffix = encoding.map_or(String::new(), |coding| format!("-{coding}"));
    format!(
        "\"{:x}-{:x}.{:x}-{:x}{suffix}\"",
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size()
    )
}

/// Content-Type from the extension (the mime_guess table), text with `; charset=utf-8`;
/// `application/octet-stream` when the extension says nothing.
fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let is_text = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if is_text {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

/// q-values in thousandths for br, zstd and gzip (the [`SIBLINGS`] order) from an
/// Accept-Encoding value (RFC 9110 §12.5.3); 0: not acceptable. No field: none (identity).
fn accepted_codings(value: Option<&[u8]>) -> [u16; 3] {
    let Some(value) = value else {
        return [0; 3];
    };
    let mut listed = [None::<u16>; 3];
    let mut wildcard = None::<u16>;
    for element in value.split(|&b| b == b',') {
        let mut parts = element.split(|&b| b == b';');
        let coding = trim(parts.next().unwrap_or_default());
        if coding.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let param = trim(param);
            if let Some(value) = param
                .strip_prefix(b"q=")
                .or_else(|| param.strip_prefix(b"Q="))
            {
                q = qvalue(value);
            }
        }
        let Some(q) = q else {
            continue; // a malformed weight: the element is ignored
        };
        let slot = if coding == b"*" {
            wildcard = Some(q);
            continue;
        } else if coding.eq_ignore_ascii_case(b"br") {
            0
        } else if coding.eq_ignore_ascii_case(b"zstd") {
            1
        } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            2
        } else {
            continue;
        };
        listed[slot] = Some(q);
    }
    listed.map(|q| q.or(wildcard).unwrap_or(0))
}

/// Indices into [`SIBLINGS`] in the order to try: by the client's q-value, ties in the
/// server's order.
fn by_preference(accepted: &[u16; 3]) -> [usize; 3] {
    let mut order = [0usize, 1, 2];
    order.sort_by_key(|&i| std::cmp::Reverse(accepted[i]));
    order
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2).
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_weights_choose_the_sibling() {
        let table: &[(Option<&str>, [u16; 3])] = &[
            (None, [0, 0, 0]),
            (Some(""), [0, 0, 0]),
            (Some("gzip, deflate, br, zstd"), [1000, 1000, 1000]),
            (Some("gzip;q=0.5, br;q=0.8"), [800, 0, 500]),
            (Some("br;q=0, gzip"), [0, 0, 1000]),
            (Some("*"), [1000, 1000, 1000]),
            (Some("*;q=0.1, gzip;q=0"), [100, 100, 0]),
            (Some("BR ; Q=1.000"), [1000, 0, 0]),
            (Some("br;q=1.5, gzip;q=abc, zstd;q=0.25"), [0, 250, 0]),
            (Some("x-gzip"), [0, 0, 1000]),
            (Some("identity"), [0, 0, 0]),
        ];
        for (value, want) in table {
            assert_eq!(
                &accepted_codings(value.map(str::as_bytes)),
                want,
                "{value:?}"
            );
        }
        let order = by_preference(&[500, 0, 900]).map(|i| SIBLINGS[i].0);
        assert_eq!(order, ["gzip", "br", "zstd"]);
        let order = by_preference(&[1000, 1000, 1000]).map(|i| SIBLINGS[i].0);
        assert_eq!(order, ["br", "zstd", "gzip"]);
    }

    #[test]
    fn siblings_are_looked_for_except_beside_compressed_formats() {
        for path in [
            "app.js",
            "site.css",
            "index.html",
            "data.bin",
            "README",
            "icon.svg",
        ] {
            assert!(may_have_siblings(path), "{path}");
        }
        for path in [
            "logo.png",
            "photo.JPG",
            "font.woff2",
            "movie.mp4",
            "app.js.gz",
        ] {
            assert!(!may_have_siblings(path), "{path}");
        }
    }

    #[test]
    fn content_types_come_from_the_extension_with_a_charset_for_text() {
        for (path, want) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a/site.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("logo.png", "image/png"),
            ("icon.svg", "image/svg+xml; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("README", "application/octet-stream"),
            ("x.unknownext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(path), want, "{path}");
        }
    }

    #[test]
    fn redirects_keep_the_query_and_encode_what_a_field_cannot_hold() {
        let reply = redirect(b"/static/docs", b"a=1&b=2");
        let mut out = bytes::BytesMut::new();
        let ctx = crate::http1::response::HeadContext {
            version: crate::http1::Version::Http11,
            is_head_request: false,
            keep_alive: true,
            known_length: None,
        };
        crate::http1::response::encode_head(&reply.head, ctx, &mut out);
        let text = String::from_utf8(out.to_vec()).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 301 "), "{text}");
        assert!(
            text.contains("Location: /static/docs/?a=1&b=2\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 0\r\n"), "{text}");
        let reply = redirect("/caf\u{e9}".as_bytes(), b"");
        crate::http1::response::encode_head(&reply.head, ctx, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("Location: /caf%C3%A9/\r\n"));
    }
}
