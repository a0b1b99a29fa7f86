//! What a trusted proxy says about the client: the scheme it used (X-Forwarded-Proto,
//! X-Forwarded-Ssl, RFC 7239 `Forwarded: proto=`) and, when asked, its address
//! (X-Forwarded-For, `Forwarded: for=`).
//!
//! Rule: only peers in `--forwarded-allow-ips` are believed; from anyone else these fields are
//! ordinary headers that change nothing. From a trusted peer, claims that disagree are a 400:
//! picking one would let a client choose which layer it fools.

use std::net::IpAddr;

use crate::http1::{RequestError, RequestHead};

/// The client as the app should see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    /// `wsgi.url_scheme`.
    pub scheme: &'static str,
    /// The client's address when a trusted proxy named it (and `--forwarded-for` is on).
    pub address: Option<IpAddr>,
}

const BAD_PROTO: RequestError = RequestError::BadRequest("invalid forwarded scheme");
const CONFLICT: RequestError = RequestError::BadRequest("conflicting forwarded schemes");

/// Works out the client view of `head` from a peer that is trusted (the caller checks trust).
pub fn trusted_view(
    head: &RequestHead,
    default_scheme: &'static str,
    use_forwarded_for: bool,
) -> Result<ClientView, RequestError> {
    let mut scheme: Option<&'static str> = None;
    let mut claim = |value: &'static str| -> Result<(), RequestError> {
        match scheme {
            Some(previous) if previous != value => Err(CONFLICT),
            _ => {
                scheme = Some(value);
                Ok(())
            }
        }
    };
    let mut xff_last: Option<&[u8]> = None;
    let mut forwarded_for: Option<Vec<u8>> = None;
    for (name, value) in head.fields() {
        if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            for element in list(value) {
                claim(parse_scheme(element)?)?;
            }
        } else if name.eq_ignore_ascii_case(b"x-forwarded-ssl") {
            let value = value.trim_ascii();
            if value.eq_ignore_ascii_case(b"on") {
                claim("https")?;
            } else if value.eq_ignore_ascii_case(b"off") {
                claim("http")?;
            } else {
                return Err(BAD_PROTO);
            }
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            if let Some(last) = list(value).last() {
                xff_last = Some(last);
            }
        } else if name.eq_ignore_ascii_case(b"forwarded") {
            // The last element is the one our trusted proxy added (RFC 7239 §4).
            let Some(element) = split_outside_quotes(value, b',').into_iter().last() else {
                continue;
            };
            for (key, param) in parse_element(element)? {
                if key.eq_ignore_ascii_case(b"proto") {
                    claim(parse_scheme(&param)?)?;
                } else if key.eq_ignore_ascii_case(b"for") {
                    forwarded_for = Some(param);
                }
            }
        }
    }
    let address = if use_forwarded_for {
        forwarded_for
            .as_deref()
            .or(xff_last)
            .and_then(parse_node_address)
    } else {
        None
    };
    Ok(ClientView {
        scheme: scheme.unwrap_or(default_scheme),
        address,
    })
}

fn parse_scheme(value: &[u8]) -> Result<&'static str, RequestError> {
    let value = value.trim_ascii();
    if value.eq_ignore_ascii_case(b"https") {
        Ok("https")
    } else if value.eq_ignore_ascii_case(b"http") {
        Ok("http")
    } else {
        Err(BAD_PROTO)
    }
}

/// Comma-separated elements, trimmed, empty ones skipped.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// Splits on `sep` except inside a quoted string.
fn split_outside_quotes(value: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(value[start..i].trim_ascii());
            start = i + 1;
        }
    }
    parts.push(value[start..].trim_ascii());
    parts.retain(|p| !p.is_empty());
    parts
}

/// `forwarded-pair *( ";" forwarded-pair )`, values tokens or quoted strings (RFC 7239 §4).
/// One `key=value` pair of a Forwarded element, the value unquoted.
type Pair<'a> = (&'a [u8], Vec<u8>);

fn parse_element(element: &[u8]) -> Result<Vec<Pair<'_>>, RequestError> {
    const BAD: RequestError = RequestError::BadRequest("malformed Forwarded field");
    let mut pairs = Vec::new();
    for pair in split_outside_quotes(element, b';') {
        let eq = pair.iter().position(|&b| b == b'=').ok_or(BAD)?;
        let (key, raw) = (&pair[..eq], &pair[eq + 1..]);
        if !crate::http1::head::is_token(key) {
            return Err(BAD);
        }
        let value = if let Some(inner) = raw.strip_prefix(b"\"") {
            let inner = inner.strip_suffix(b"\"").ok_or(BAD)?;
            let mut out = Vec::with_capacity(inner.len());
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                match b {
                    b'\\' => out.push(*bytes.next().ok_or(BAD)?),
                    b'"' => return Err(BAD),
                    _ => out.push(b),
                }
            }
            out
        } else if crate::http1::head::is_token(raw) {
            raw.to_vec()
        } else {
            return Err(BAD);
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// A node address: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, or a bare
/// IPv6 address. Obfuscated identifiers (`unknown`, `_hidden`) give `None`.
fn parse_node_address(node: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(node).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{HeadParser, Limits};
    use bytes::BytesMut;

    fn view(fields: &str, forwarded_for: bool) -> Result<ClientView, RequestError> {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let mut buf = BytesMut::from(raw.as_bytes());
        let head = HeadParser::new(Limits::default())
            .parse(&mut buf)
            .expect("valid head")
            .expect("complete head");
        trusted_view(&head, "http", forwarded_for)
    }

    fn scheme(fields: &str) -> Result<&'static str, RequestError> {
        view(fields, false).map(|v| v.scheme)
    }

    #[test]
    fn scheme_comes_from_any_of_the_three_fields() {
        assert_eq!(scheme(""), Ok("http"));
        assert_eq!(scheme("X-Forwarded-Proto: https\r\n"), Ok("https"));
        assert_eq!(scheme("X-Forwarded-Ssl: on\r\n"), Ok("https"));
        assert_eq!(
            scheme("Forwarded: for=1.2.3.4;proto=https\r\n"),
            Ok("https")
        );
        assert_eq!(
            scheme("X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\nForwarded: proto=https\r\n"),
            Ok("https")
        );
    }

    #[test]
    fn conflicting_or_invalid_schemes_are_refused() {
        for fields in [
            "X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n",
            "X-Forwarded-Proto: http\r\nForwarded: proto=https\r\n",
            "X-Forwarded-Proto: https, http\r\n",
            "X-Forwarded-Proto: ftp\r\n",
            "X-Forwarded-Ssl: maybe\r\n",
            "Forwarded: proto\r\n",
            "Forwarded: proto=\"https\r\n",
        ] {
            assert!(scheme(fields).is_err(), "{fields:?}");
        }
    }

    #[test]
    fn client_address_is_the_last_hop_when_asked() {
        let address = |fields: &str| view(fields, true).expect("valid").address;
        assert_eq!(
            address("X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"),
            "2.2.2.2".parse().ok()
        );
        assert_eq!(
            address("Forwarded: for=\"[2001:db8::1]:4711\"\r\n"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(
            address("Forwarded: for=9.9.9.9, for=192.0.2.60;proto=https\r\n"),
            "192.0.2.60".parse().ok()
        );
        assert_eq!(address("Forwarded: for=unknown\r\n"), None);
        assert_eq!(
            address("X-Forwarded-For: 10.0.0.1:5555\r\n"),
            "10.0.0.1".parse().ok()
        );
        assert_eq!(
            view("X-Forwarded-For: 1.1.1.1\r\n", false)
                .expect("valid")
                .address,
            None
        );
    }
}
