//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a load balancer sends before
//! the client's bytes to say who the client really is. Sans-I/O, incremental, strict.
//!
//! Only peers named by `--proxy-allow-from` may send it; the connection decides that. Anything
//! malformed is an error and the connection closes without a response (the bytes are not HTTP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// What the PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The client's and the proxy's (destination) addresses.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `UNKNOWN` (v1) or `LOCAL`/an unsupported family (v2): keep the socket's own addresses.
    Local,
}

/// Why a PROXY header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProxyError {
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes including CRLF (spec §2.1).
const V1_MAX: usize = 107;
/// v2 address blocks (with TLVs) larger than this are refused; real proxies send < 300 bytes.
const V2_MAX_BODY: usize = 2048;

/// Parses a PROXY header from the start of `buf`. `Ok(None)`: more bytes are needed;
/// `Ok(Some((header, len)))`: the header is the first `len` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let v1_prefix = b"PROXY ";
    let n = buf.len().min(v1_prefix.len());
    if buf[..n] == v1_prefix[..n] {
        return if buf.len() < v1_prefix.len() {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    Err(ProxyError::Malformed("no PROXY protocol signature"))
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(ProxyError::Malformed("v1 line not ended by CRLF"));
        }
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed("v1 line too long"))
        } else {
            Ok(None)
        };
    };
    if window[..cr].contains(&b'\n') {
        return Err(ProxyError::Malformed("v1 line not ended by CRLF"));
    }
    if cr + 2 > V1_MAX {
        return Err(ProxyError::Malformed("v1 line too long"));
    }
    match window.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::Malformed("v1 line not ended by CRLF")),
    }
    let line = std::str::from_utf8(&window[..cr])
        .map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader::Local,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *family == "TCP6";
            let source = SocketAddr::new(parse_ip(src, v6)?, parse_port(sport)?);
            let destination = SocketAddr::new(parse_ip(dst, v6)?, parse_port(dport)?);
            ProxyHeader::Proxied {
                source,
                destination,
            }
        }
        _ => {
            return Err(ProxyError::Malformed(
                "v1 line is not PROXY TCP4|TCP6|UNKNOWN ...",
            ))
        }
    };
    Ok(Some((header, cr + 2)))
}

fn parse_ip(text: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    const BAD: ProxyError = ProxyError::Malformed("v1 address");
    if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| BAD)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| BAD)
    }
}

/// Ports are decimal without leading zeros (spec §2.1), 0..=65535.
fn parse_port(text: &str) -> Result<u16, ProxyError> {
    const BAD: ProxyError = ProxyError::Malformed("v1 port");
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(BAD);
    }
    text.parse().map_err(|_| BAD)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version"));
    }
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX_BODY {
        return Err(ProxyError::Malformed("v2 header too long"));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let total = 16 + len;
    let header = match version_command & 0x0f {
        // LOCAL: a health check from the proxy itself; addresses are ignored.
        0x0 => ProxyHeader::Local,
        0x1 => match family {
            // TCP over IPv4
            0x11 => {
                if body.len() < 12 {
                    return Err(ProxyError::Malformed("v2 IPv4 block too short"));
                }
                let ip = |at: usize| {
                    IpAddr::V4(Ipv4Addr::new(
                        body[at],
                        body[at + 1],
                        body[at + 2],
                        body[at + 3],
                    ))
                };
                let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                }
            }
            // TCP over IPv6
            0x21 => {
                if body.len() < 36 {
                    return Err(ProxyError::Malformed("v2 IPv6 block too short"));
                }
                let ip = |at: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&body[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                }
            }
            // UNSPEC, UDP, unix: nothing an HTTP environ can use; keep the socket's addresses.
            0x00 | 0x12 | 0x22 | 0x31 | 0x32 => ProxyHeader::Local,
            _ => return Err(ProxyError::Malformed("v2 address family")),
        },
        _ => return Err(ProxyError::Malformed("v2 command")),
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    /// Parses `input` fed in pieces of `step` bytes, as the connection does.
    fn parse_split(input: &[u8], step: usize) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
        for end in (step..input.len()).step_by(step) {
            if let Some(found) = parse(&input[..end])? {
                return Ok(Some(found));
            }
        }
        parse(input)
    }

    #[test]
    fn v1_tcp4_and_tcp6_parse_however_split() {
        let input = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        let expected = ProxyHeader::Proxied {
            source: addr("192.0.2.1:56324"),
            destination: addr("198.51.100.2:443"),
        };
        for step in 1..input.len() {
            assert_eq!(
                parse_split(input, step),
                Ok(Some((expected, 45))),
                "step {step}"
            );
        }
        let input = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            parse(input),
            Ok(Some((
                ProxyHeader::Proxied {
                    source: addr("[2001:db8::1]:1"),
                    destination: addr("[2001:db8::2]:2")
                },
                input.len()
            )))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Some((ProxyHeader::Local, 15)))
        );
    }

    #[test]
    fn v2_tcp4_parses_with_tlvs() {
        let mut input = V2_SIGNATURE.to_vec();
        input.extend_from_slice(&[0x21, 0x11, 0, 15]);
        input.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x00, 0x50]);
        input.extend_from_slice(&[0x04, 0x00, 0x00]); // a NOOP TLV
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let expected = ProxyHeader::Proxied {
            source: addr("10.0.0.1:8080"),
            destination: addr("10.0.0.2:80"),
        };
        for step in 1..input.len() {
            assert_eq!(
                parse_split(&input, step),
                Ok(Some((expected, 31))),
                "step {step}"
            );
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Ok(Some((ProxyHeader::Local, 16))));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04",
            b"\r\n\r\n\0\r\nQUIT\n\x22\x11\x00\x00",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x99\x00\x00",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
        ];
        for input in cases {
            assert!(
                parse(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
    }

    #[test]
    fn prefixes_wait_for_more() {
        assert_eq!(parse(b"PRO"), Ok(None));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(None));
        assert_eq!(parse(b"\r\n\r\n\0"), Ok(None));
        assert_eq!(parse(&V2_SIGNATURE[..]), Ok(None));
    }
}
