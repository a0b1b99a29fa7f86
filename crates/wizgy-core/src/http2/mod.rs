//! HTTP/2 on the `h2` crate: h2 does the framing, HPACK, flow control and the protocol's state
//! machine; wizgy maps each stream to one [`crate::exchange::Exchange`], through the same app
//! threads, static files, limits and timeouts as HTTP/1.1.
//!
//! Why h2 and not our own framing (as HTTP/1.1 has): HTTP/2's strictness lives in its state
//! machine and HPACK, which h2 (hyper's) has had hardened against the published attacks, and
//! HTTP/2 has none of HTTP/1's framing ambiguities that made us own that parser.
//!
//! One task drives the connection (h2's `Connection`, which does all the reading and writing)
//! and, inside it, each stream's future ([`stream`]), which speaks to the app side over the
//! exchange link and to the connection through h2's stream handles.
//!
//! Limits, each with the attack it answers (tests/test_http2.py drives every one):
//! - rapid reset (CVE-2023-44487): a stream the client resets stops counting for h2 at once,
//!   but its exchange may still be running in an app thread. wizgy counts exchanges, not h2
//!   streams: a connection that has more than `--http2-max-concurrent-streams` exchanges in
//!   flight (possible only by resetting streams whose work goes on) gets GOAWAY with
//!   ENHANCE_YOUR_CALM. h2's own `max_pending_accept_reset_streams` bounds resets of streams
//!   not yet accepted.
//! - CONTINUATION flood (CVE-2024-27316) and HPACK bombs: h2 bounds a header block by the
//!   header-list limit (derived from the HTTP/1 head limits) as it decodes, and counts
//!   CONTINUATION frames; each field is then held to `--limit-request-field-size` and the
//!   count to `--limit-request-fields` (431, as on HTTP/1.1).
//! - SETTINGS, PING and empty-frame floods: h2 answers one SETTINGS/PING at a time (it reads
//!   no further while an ACK is unsent) and charges empty DATA frames to a budget
//!   (`data_frame_budget`, ENHANCE_YOUR_CALM past it).
//! - zero-window stalls: a stream sends only within the window the client grants; one that
//!   gets none for `--write-timeout` is reset, so a slow reader holds at most its windows.
//! - a stream ID lower than the last, and every other state-machine error: h2's GOAWAY with
//!   PROTOCOL_ERROR.

mod stream;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use crate::config::Config;
use crate::exchange::{PeerAddr, ServerInfo};
use crate::http1::Limits;
use crate::protocol::ConnectionSettings;
use crate::stream::Rewind;
use crate::tls::TlsInfo;

/// The SETTINGS wizgy announces and the limits it keeps (`--http2-*`).
#[derive(Debug, Clone, Copy)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: what the HTTP/1 limits allow a head to be.
    pub max_header_list_size: u32,
}

impl Http2Settings {
    pub fn from_config(config: &Config, limits: &Limits) -> Self {
        Http2Settings {
            max_concurrent_streams: config.http2_max_concurrent_streams,
            initial_stream_window: config.http2_initial_stream_window,
            initial_connection_window: config.http2_initial_connection_window,
            max_frame_size: config.http2_max_frame_size,
            max_header_list_size: header_list_limit(limits),
        }
    }
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: 100,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_header_list_size: header_list_limit(&Limits::default()),
        }
    }
}

/// The header list HTTP/2 allows (RFC 9113 §6.5.2 counts each field as name + value + 32):
/// as much as the HTTP/1 limits let a head hold, a request line and the most fields of the
/// longest size, capped at 1 MiB.
fn header_list_limit(limits: &Limits) -> u32 {
    let fields = limits.max_fields.saturating_mul(limits.max_field_size + 32);
    let total = fields.saturating_add(limits.max_request_line);
    u32::try_from(total.min(1 << 20)).unwrap_or(1 << 20)
}

/// Response bytes h2 buffers per stream beyond what the window lets it send: the app is held
/// back past this (through the exchange link), so a slow reader costs this much per stream.
const SEND_BUFFER: usize = 64 * 1024;

/// Remotely reset streams that h2 keeps in its accept queue before GOAWAY (h2's own rapid-
/// reset guard, for streams reset before wizgy accepted them).
const PENDING_ACCEPT_RESETS: usize = 20;

/// What every stream of one connection shares.
pub(crate) struct ConnectionContext {
    pub settings: Arc<ConnectionSettings>,
    pub server: Arc<ServerInfo>,
    pub peer: PeerAddr,
    pub tls: Option<Arc<TlsInfo>>,
    /// Streams the client reset while their exchange was queued or running.
    pub cancelled: AtomicU32,
}

/// Cancelled exchanges a connection may cause, in multiples of its stream limit, before
/// GOAWAY (when they are also more than half its streams): a browser cancels a few when the
/// user navigates away; an attacker opens and resets streams by the thousand.
const CANCELLED_PER_STREAM_LIMIT: u32 = 2;

/// Serves one HTTP/2 connection (the preface not yet read, or in `io`'s replay) until the
/// client closes it, an error, the keep-alive timeout with no stream open, or a graceful stop
/// (GOAWAY: the streams in flight finish, new ones go to other workers).
pub(crate) async fn serve(
    io: Rewind,
    peer: PeerAddr,
    server: Arc<ServerInfo>,
    settings: Arc<ConnectionSettings>,
    tls: Option<Arc<TlsInfo>>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = settings.http2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_window_size(limits.initial_stream_window)
        .initial_connection_window_size(limits.initial_connection_window)
        .max_frame_size(limits.max_frame_size)
        .max_header_list_size(limits.max_header_list_size)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS);
    // The preface and SETTINGS exchange, within the header timeout (a client that opens a
    // connection and says nothing is closed then, as on HTTP/1.1).
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(settings.header_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            tracing::debug!("HTTP/2 handshake failed: {error}");
            return;
        }
        Err(_) => {
            tracing::debug!("HTTP/2 handshake timed out");
            return;
        }
    };
    let context = Arc::new(ConnectionContext {
        settings: settings.clone(),
        server,
        peer,
        tls,
        cancelled: AtomicU32::new(0),
    });
    let mut accepted_streams: u32 = 0;
    // The streams run inside this task, not as tasks of their own: a stream's sends and the
    // connection's writes then happen in one poll, where a task per stream was one more
    // wake and poll per stream, and a spawn (see ARCHITECTURE.md, HTTP/2, for the numbers).
    let mut streams = FuturesUnordered::new();
    let mut stop = shutdown.clone();
    let mut going_away = *shutdown.borrow();
    if going_away {
        conn.graceful_shutdown();
    }
    let idle = tokio::time::sleep(settings.keep_alive_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    // Boxed: the set holds a pointer; a stream's future is large.
                    streams.push(Box::pin(stream::run(request, respond, context.clone())));
                    accepted_streams = accepted_streams.saturating_add(1);
                    let cancelled = context.cancelled.load(Ordering::Relaxed);
                    // Exchanges in flight, those of streams the client reset included: past
                    // the stream limit only by resetting streams whose work goes on. And
                    // exchanges cancelled, past a budget.
                    let too_many_cancelled = cancelled
                        > CANCELLED_PER_STREAM_LIMIT * limits.max_concurrent_streams
                        && cancelled * 2 > accepted_streams;
                    if !going_away
                        && (streams.len() > limits.max_concurrent_streams as usize
                            || too_many_cancelled)
                    {
                        tracing::warn!(
                            "HTTP/2 client reset streams faster than their exchanges end: \
                             GOAWAY (ENHANCE_YOUR_CALM)"
                        );
                        conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                        going_away = true;
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!("HTTP/2 connection error: {error}");
                    break;
                }
                None => break,
            },
            Some(()) = streams.next(), if !streams.is_empty() => {
                if streams.is_empty() {
                    idle.as_mut().reset(tokio::time::Instant::now() + settings.keep_alive_timeout);
                }
            }
            () = &mut idle, if streams.is_empty() && !going_away => {
                tracing::debug!("HTTP/2 connection idle: GOAWAY");
                conn.graceful_shutdown();
                going_away = true;
            }
            changed = stop.changed(), if !going_away => {
                if changed.is_err() || *stop.borrow() {
                    conn.graceful_shutdown();
                    going_away = true;
                }
            }
        }
    }
    // The connection is closed: what is left of its streams cannot be sent anywhere. Each
    // stream dropped here drops its exchange's link, so an app still sending stops.
    drop(streams);
}
