//! Conditional requests (RFC 9110 §13) against one file's validators: its strong ETag and its
//! modification time. Pure: request fields in, a decision out.
//!
//! The preconditions are evaluated in the order of §13.2.2; a precondition whose field is
//! malformed (an unparsable date) is ignored, as §13.1.3 and §13.1.4 say.

use std::time::{Duration, SystemTime};

use crate::http1::RequestHead;

/// The validators of the representation about to be sent.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// The strong entity tag, quotes included: `"5f3a-1c2"`.
    pub etag: &'a str,
    /// Last-Modified, whole seconds since the epoch (as the field shows it).
    pub modified: u64,
}

/// What the preconditions decide for a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the representation (Range may apply: see [`range_applies`]).
    Send,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since (§13.2.2) for
/// a GET or HEAD request.
pub fn evaluate(head: &RequestHead, current: Validators<'_>) -> Decision {
    // Step 1-2: If-Match (strong comparison, §13.1.1), else If-Unmodified-Since.
    if let Some(value) = head.field("if-match") {
        if !matches_list(value, current.etag, Comparison::Strong) {
            return Decision::Failed;
        }
    } else if let Some(since) = head.field("if-unmodified-since").and_then(parse_date) {
        if current.modified > since {
            return Decision::Failed;
        }
    }
    // Step 3-4: If-None-Match (weak comparison, §13.1.2), else If-Modified-Since; for GET and
    // HEAD a match is 304.
    if let Some(value) = head.field("if-none-match") {
        if matches_list(value, current.etag, Comparison::Weak) {
            return Decision::NotModified;
        }
    } else if let Some(since) = head.field("if-modified-since").and_then(parse_date) {
        if current.modified <= since {
            return Decision::NotModified;
        }
    }
    Decision::Send
}

/// Whether a Range in the request applies: without If-Range, yes; with it, only if it names
/// the current representation (§13.1.5: an entity tag compared strongly, or a date equal to
/// Last-Modified).
pub fn range_applies(head: &RequestHead, current: Validators<'_>) -> bool {
    let Some(value) = head.field("if-range") else {
        return true;
    };
    let value = trim_ows(value);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        // A weak tag never matches: If-Range needs a strong validator.
        return value == current.etag.as_bytes();
    }
    parse_date(value) == Some(current.modified)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether a field value (`*` or a list of entity tags) matches `etag` (§13.1.1, §13.1.2).
/// A malformed list matches nothing.
fn matches_list(value: &[u8], etag: &str, comparison: Comparison) -> bool {
    let value = trim_ows(value);
    if value == b"*" {
        // The file exists: "*" matches any current representation.
        return true;
    }
    let ours = etag.as_bytes();
    let mut rest = value;
    loop {
        rest = trim_ows(rest);
        while let [b',', tail @ ..] = rest {
            rest = trim_ows(tail);
        }
        if rest.is_empty() {
            return false;
        }
        // entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
        let (weak, tagged) = match rest.strip_prefix(b"W/") {
            Some(tail) => (true, tail),
            None => (false, rest),
        };
        let Some(after_quote) = tagged.strip_prefix(b"\"") else {
            return false;
        };
        let Some(close) = after_quote.iter().position(|&b| b == b'"') else {
            return false;
        };
        let opaque = &tagged[..close + 2];
        let equal = opaque == ours;
        let matched = match comparison {
            Comparison::Strong => equal && !weak,
            Comparison::Weak => equal,
        };
        if matched {
            return true;
        }
        rest = &after_quote[close + 1..];
        if !(rest.is_empty() || matches!(trim_ows(rest).first(), Some(b','))) {
            return false;
        }
    }
}

/// An HTTP-date (any of the three forms §5.6.7 accepts) as whole seconds since the epoch.
fn parse_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(trim_ows(value)).ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    Some(seconds(time))
}

/// Whole seconds since the epoch (a time before it counts as 0).
pub fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn trim_ows(mut text: &[u8]) -> &[u8] {
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
    use crate::http1::{HeadParser, Limits};
    use bytes::BytesMut;

    fn head(fields: &str) -> RequestHead {
        let raw = format!("GET /f HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let mut buf = BytesMut::from(raw.as_bytes());
        HeadParser::new(Limits::default())
            .parse(&mut buf)
            .expect("valid head")
            .expect("complete head")
    }

    const ETAG: &str = "\"abc-1\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const MODIFIED: u64 = 784_111_777;

    fn decide(fields: &str) -> Decision {
        let current = Validators {
            etag: ETAG,
            modified: MODIFIED,
        };
        evaluate(&head(fields), current)
    }

    #[test]
    fn preconditions_decide_in_rfc_9110_order() {
        use Decision::*;
        let table: &[(&str, Decision)] = &[
            ("", Send),
            ("If-None-Match: \"abc-1\"\r\n", NotModified),
            ("If-None-Match: W/\"abc-1\"\r\n", NotModified),
            ("If-None-Match: \"x\", \"abc-1\"\r\n", NotModified),
            ("If-None-Match: \"x\",W/\"abc-1\" \r\n", NotModified),
            ("If-None-Match: *\r\n", NotModified),
            ("If-None-Match: \"abc-2\"\r\n", Send),
            ("If-None-Match: abc-1\r\n", Send),
            ("If-None-Match: \"abc-1\r\n", Send),
            ("If-None-Match: \"x\" \"abc-1\"\r\n", Send),
            (
                "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
                NotModified,
            ),
            (
                "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n",
                NotModified,
            ),
            (
                "If-Modified-Since: Sun Nov  6 08:49:37 1994\r\n",
                NotModified,
            ),
            ("If-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n", Send),
            ("If-Modified-Since: yesterday\r\n", Send),
            // If-None-Match wins over If-Modified-Since (§13.2.2 step 4 is skipped).
            (
                "If-None-Match: \"other\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
                Send,
            ),
            ("If-Match: \"abc-1\"\r\n", Send),
            ("If-Match: *\r\n", Send),
            ("If-Match: \"x\", \"abc-1\"\r\n", Send),
            ("If-Match: W/\"abc-1\"\r\n", Failed),
            ("If-Match: \"abc-2\"\r\n", Failed),
            (
                "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
                Send,
            ),
            (
                "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n",
                Failed,
            ),
            ("If-Unmodified-Since: garbage\r\n", Send),
            // If-Match wins over If-Unmodified-Since, and a failed one over If-None-Match.
            (
                "If-Match: \"abc-1\"\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n",
                Send,
            ),
            ("If-Match: \"zzz\"\r\nIf-None-Match: \"abc-1\"\r\n", Failed),
        ];
        for &(fields, want) in table {
            assert_eq!(decide(fields), want, "{fields:?}");
        }
    }

    #[test]
    fn if_range_needs_a_strong_match_or_the_exact_date() {
        let current = Validators {
            etag: ETAG,
            modified: MODIFIED,
        };
        let table: &[(&str, bool)] = &[
            ("", true),
            ("If-Range: \"abc-1\"\r\n", true),
            ("If-Range: W/\"abc-1\"\r\n", false),
            ("If-Range: \"abc-2\"\r\n", false),
            ("If-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n", true),
            ("If-Range: Sun, 06 Nov 1994 08:49:38 GMT\r\n", false),
            ("If-Range: nonsense\r\n", false),
        ];
        for &(fields, want) in table {
            assert_eq!(range_applies(&head(fields), current), want, "{fields:?}");
        }
    }
}
