//! The CGI side of a request, as PEP 3333 names it, without Python: percent-decoding the path,
//! mapping header names to environ keys, and splitting off the mount prefix (SCRIPT_NAME).
//!
//! Turning these bytes into Python strings is the binding crate's job.

use std::borrow::Cow;

/// Percent-decodes a path. Invalid escapes (`%zz`, a trailing `%`) are kept as they are, as
/// `urllib.parse.unquote` does; `+` is not a space in a path.
pub fn percent_decode(path: &[u8]) -> Cow<'_, [u8]> {
    if !path.contains(&b'%') {
        return Cow::Borrowed(path);
    }
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(hi), Some(lo)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Where a request header goes in the environ.
#[derive(Debug, PartialEq, Eq)]
pub enum CgiName {
    /// `CONTENT_TYPE`, without the `HTTP_` prefix (PEP 3333).
    ContentType,
    /// `CONTENT_LENGTH`, without the `HTTP_` prefix.
    ContentLength,
    /// `HTTP_` plus the name upper-cased with `-` as `_`.
    Http(String),
    /// Not passed to the app: a name with `_` would collide with the dashed spelling after
    /// the mapping (`X_Auth` and `X-Auth` both become `HTTP_X_AUTH`; CVE-2015-0219).
    Dropped,
}

/// Maps a header name to its environ key.
pub fn cgi_name(name: &[u8]) -> CgiName {
    if name.contains(&b'_') {
        return CgiName::Dropped;
    }
    if name.eq_ignore_ascii_case(b"content-type") {
        return CgiName::ContentType;
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        return CgiName::ContentLength;
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.iter().map(|&b| match b {
        b'-' => '_',
        b => b.to_ascii_uppercase() as char,
    }));
    CgiName::Http(key)
}

/// The separator used when a header is repeated: `; ` for Cookie (RFC 6265 §5.4), `,` for
/// every other field (RFC 9110 §5.3).
pub fn join_separator(key: &str) -> &'static str {
    if key == "HTTP_COOKIE" {
        "; "
    } else {
        ","
    }
}

/// Splits a decoded path into (SCRIPT_NAME, PATH_INFO) for the mount prefix `root`: the prefix
/// is removed when the path starts with it at a segment boundary (`/app` matches `/app` and
/// `/app/x`, not `/apple`).
pub fn split_root<'a>(root: &str, path: &'a [u8]) -> &'a [u8] {
    let root = root.as_bytes();
    if root.is_empty() || !path.starts_with(root) {
        return path;
    }
    let rest = &path[root.len()..];
    if rest.is_empty() || rest[0] == b'/' {
        rest
    } else {
        path
    }
}

/// Which of `prefixes` (each without a trailing `/`, none empty) `path` falls under: the
/// longest that equals it or is followed in it by `/` (segment boundaries: `/api` matches
/// `/api` and `/api/x`, never `/apix`).
pub fn longest_mount<P: AsRef<[u8]>>(prefixes: &[P], path: &[u8]) -> Option<usize> {
    prefixes
        .iter()
        .enumerate()
        .filter(|(_, prefix)| {
            let prefix = prefix.as_ref();
            !prefix.is_empty()
                && path.starts_with(prefix)
                && matches!(path.get(prefix.len()), None | Some(b'/'))
        })
        .max_by_key(|(_, prefix)| prefix.as_ref().len())
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_wins_on_segment_boundaries() {
        let prefixes = ["/api", "/api/v2", "/admin", "/cgi/ctime.py"];
        let table: &[(&[u8], Option<usize>)] = &[
            (b"/api", Some(0)),
            (b"/api/", Some(0)),
            (b"/api/x", Some(0)),
            (b"/apix", None),
            (b"/api/v2", Some(1)),
            (b"/api/v2/users", Some(1)),
            (b"/api/v21", Some(0)),
            (b"/admin/login", Some(2)),
            (b"/cgi/ctime.py", Some(3)),
            (b"/cgi/ctime.py/more", Some(3)),
            (b"/cgi/ctime.pyc", None),
            (b"/", None),
            (b"", None),
        ];
        for &(path, expected) in table {
            assert_eq!(
                longest_mount(&prefixes, path),
                expected,
                "{}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn percent_decoding_matches_unquote() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/plain", b"/plain"),
            (b"/caf%C3%A9", b"/caf\xc3\xa9"),
            (b"/a%2Fb", b"/a/b"),
            (b"/a%20b+c", b"/a b+c"),
            (b"/bad%zz%", b"/bad%zz%"),
            (b"/end%4", b"/end%4"),
            (b"/x%41", b"/xA"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &*percent_decode(input),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn header_names_map_to_cgi_keys() {
        assert_eq!(cgi_name(b"Content-Type"), CgiName::ContentType);
        assert_eq!(cgi_name(b"content-length"), CgiName::ContentLength);
        assert_eq!(
            cgi_name(b"X-Forwarded-For"),
            CgiName::Http("HTTP_X_FORWARDED_FOR".into())
        );
        assert_eq!(cgi_name(b"X_Auth_User"), CgiName::Dropped);
        assert_eq!(cgi_name(b"Content_Length"), CgiName::Dropped);
        assert_eq!(join_separator("HTTP_COOKIE"), "; ");
        assert_eq!(join_separator("HTTP_ACCEPT"), ",");
    }

    #[test]
    fn root_path_is_removed_at_segment_boundaries() {
        assert_eq!(split_root("/app", b"/app/x"), b"/x");
        assert_eq!(split_root("/app", b"/app"), b"");
        assert_eq!(split_root("/app", b"/apple"), b"/apple");
        assert_eq!(split_root("/app", b"/other"), b"/other");
        assert_eq!(split_root("", b"/x"), b"/x");
    }
}
