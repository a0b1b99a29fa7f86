//! A new connection's first steps, whatever protocol it speaks: the PROXY header a trusted
//! balancer sends, the TLS handshake, and the choice of protocol, made here and nowhere else:
//!
//! - over TLS, by ALPN: `h2` goes to [`crate::http2`], `http/1.1` (or no ALPN) to
//!   [`crate::http1::connection`] (with `--http 2`, a client without ALPN gets HTTP/2);
//! - on cleartext, `--http 2` goes straight to HTTP/2 (h2c with prior knowledge), `--http 1`
//!   to HTTP/1.1, and `auto` starts as HTTP/1.1, whose reader hands the connection over when
//!   its first bytes are the HTTP/2 client preface. The `Upgrade: h2c` dance is not offered:
//!   browsers never use it, and RFC 9113 §3.1 deprecates it.
//!
//! Both drivers turn requests into the same [`crate::exchange::Exchange`]s.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{HttpVersions, Networks};
use crate::exchange::{Dispatch, PeerAddr, ServerInfo};
use crate::files::StaticFiles;
use crate::forwarded;
use crate::http1::{Limits, RequestError, RequestHead};
use crate::http2::Http2Settings;
use crate::proxy_protocol::{self, ProxyHeader};
use crate::recycle::RequestBudget;
use crate::stream::{Rewind, Stream};
use crate::tls::TlsInfo;
use crate::{http1, http2};

/// Settings shared by every connection of a worker.
pub struct ConnectionSettings {
    pub dispatcher: Arc<dyn Dispatch>,
    pub limits: Limits,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keep_alive_timeout: Duration,
    /// Time allowed for a whole request head to arrive once it has started.
    pub header_timeout: Duration,
    /// Time allowed without progress while the app waits for request body bytes.
    pub body_timeout: Duration,
    /// Time allowed for a response write to make progress.
    pub write_timeout: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_request_body: u64,
    /// Peers whose X-Forwarded-* / Forwarded fields are believed.
    pub forwarded_allow_ips: Networks,
    /// Whether trusted peers also set the client address.
    pub forwarded_for: bool,
    /// Whether connections from `proxy_allow_from` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    pub proxy_allow_from: Networks,
    /// A request running longer is answered 504 (if nothing was sent yet) and cut.
    pub request_timeout: Option<Duration>,
    /// Exchanges started by this worker, against `--max-requests`.
    pub budget: RequestBudget,
    /// `--static` mounts: a request they answer never reaches the app.
    pub static_files: Arc<StaticFiles>,
    /// `--certfile`: TCP connections start with a TLS handshake (unix sockets never do).
    pub tls: Option<TlsAcceptor>,
    /// `--http`: which versions are spoken.
    pub http: HttpVersions,
    /// HTTP/2 settings and limits (`--http2-*`, and the header limits).
    pub http2: Http2Settings,
}

/// Serves one connection until it closes, fails, idles out or the worker shuts down.
/// `_held_until_closed` (the accept loop's connection permit and liveness token) is dropped
/// after the socket is closed.
pub async fn serve(
    stream: Stream,
    peer: PeerAddr,
    server: Arc<ServerInfo>,
    settings: Arc<ConnectionSettings>,
    shutdown: watch::Receiver<bool>,
    _held_until_closed: impl Send,
) {
    let _open = crate::metrics::OpenConnection::new();
    let mut peer = peer;
    let (stream, tls) = match (stream, &settings.tls) {
        // Boxed: the handshake's state (rustls' connection, a PROXY header buffer) would
        // otherwise be part of every connection's task, plaintext ones included.
        (Stream::Tcp(tcp), Some(acceptor)) => {
            match Box::pin(handshake(tcp, &mut peer, acceptor, &settings)).await {
                Some((stream, info)) => (stream, Some(info)),
                None => return,
            }
        }
        (stream, _) => (stream, None),
    };
    let http2 = match (&tls, settings.http) {
        (_, HttpVersions::Http1) => false,
        (Some(info), versions) => match info.alpn.as_deref() {
            Some(protocol) => protocol == b"h2",
            None => versions == HttpVersions::Http2,
        },
        (None, versions) => versions == HttpVersions::Http2,
    };
    if http2 {
        // Boxed for the same reason: h2's connection state is large, and most connections
        // are HTTP/1.1.
        let io = Rewind::new(bytes::Bytes::new(), stream);
        Box::pin(http2::serve(io, peer, server, settings, tls, shutdown)).await;
        return;
    }
    let sniff_preface = tls.is_none() && settings.http == HttpVersions::Auto;
    let handed_over = http1::connection::serve(
        stream,
        peer,
        server.clone(),
        settings.clone(),
        tls,
        shutdown.clone(),
        sniff_preface,
    )
    .await;
    if let Some((io, peer)) = handed_over {
        Box::pin(http2::serve(io, peer, server, settings, None, shutdown)).await;
    }
}

pub(crate) fn expects_proxy_header(settings: &ConnectionSettings, peer: PeerAddr) -> bool {
    settings.proxy_protocol
        && matches!(peer, PeerAddr::Ip(addr) if settings.proxy_allow_from.contains(addr.ip()))
}

/// The TLS handshake of a new TCP connection, within `--header-timeout` (a client that never
/// finishes it is closed then); before it, the PROXY header a trusted balancer sends. `None`:
/// the connection is closed without a word (plain HTTP, garbage, a protocol or certificate
/// rustls refuses: rustls has sent its alert where one is due).
async fn handshake(
    tcp: TcpStream,
    peer: &mut PeerAddr,
    acceptor: &TlsAcceptor,
    settings: &ConnectionSettings,
) -> Option<(Stream, Arc<TlsInfo>)> {
    let deadline = tokio::time::Instant::now() + settings.header_timeout;
    let mut tcp = tcp;
    if expects_proxy_header(settings, *peer) {
        match tokio::time::timeout_at(deadline, proxy_header_before_tls(&mut tcp)).await {
            Ok(Some(Some(source))) => *peer = PeerAddr::Ip(source),
            Ok(Some(None)) => {}
            _ => return None,
        }
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let info = Arc::new(TlsInfo::of(tls.get_ref().1));
            Some((Stream::Tls(Box::new(tls)), info))
        }
        Ok(Err(error)) => {
            tracing::debug!("TLS handshake failed: {error}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Reads a PROXY header (v1 or v2) without reading past it: the bytes after it are the TLS
/// client hello, which rustls must read itself. It is peeked at until whole, then consumed.
/// `Some(Some(addr))`: the client it names; `Some(None)`: a header that names none (LOCAL);
/// `None`: malformed or the client went away.
async fn proxy_header_before_tls(tcp: &mut TcpStream) -> Option<Option<std::net::SocketAddr>> {
    // A v1 header is at most 107 bytes; v2 headers with TLVs a few hundred.
    let mut peeked = [0u8; 1024];
    let mut seen = 0;
    loop {
        let n = tcp.peek(&mut peeked).await.ok()?;
        if n == 0 {
            return None;
        }
        match proxy_protocol::parse(&peeked[..n]) {
            Ok(Some((header, len))) => {
                tcp.read_exact(&mut peeked[..len]).await.ok()?;
                return Some(match header {
                    ProxyHeader::Proxied { source, .. } => Some(source),
                    _ => None,
                });
            }
            Ok(None) if n < peeked.len() => {}
            _ => return None,
        }
        if n == seen {
            // The rest of the header has not arrived: peek finds the same bytes at once, so
            // wait a moment (within the caller's deadline) instead of spinning.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = n;
    }
}

/// The scheme and client address the app sees, from trusted proxies' fields.
pub(crate) fn client_view(
    settings: &ConnectionSettings,
    peer: PeerAddr,
    default_scheme: &'static str,
    head: &RequestHead,
) -> Result<(&'static str, PeerAddr), RequestError> {
    // A unix socket's peer is a process on this host that may open the socket file (the
    // proxy in front): trusted as gunicorn trusts it, unless the list trusts no one
    // (`--forwarded-allow-ips ''`). Issue 23: nginx on a unix socket lost the client's
    // address and scheme.
    let trusted = match peer {
        PeerAddr::Ip(addr) => settings.forwarded_allow_ips.contains(addr.ip()),
        PeerAddr::Unix => !settings.forwarded_allow_ips.is_empty(),
        PeerAddr::Reported(_) => false,
    };
    if !trusted {
        return Ok((default_scheme, peer));
    }
    let view = forwarded::trusted_view(head, default_scheme, settings.forwarded_for)?;
    let peer = view.address.map_or(peer, PeerAddr::Reported);
    Ok((view.scheme, peer))
}

/// Sleeps until `deadline`, or forever without one (`--request-timeout`, in both drivers).
pub(crate) async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
