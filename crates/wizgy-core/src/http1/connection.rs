//! The HTTP/1.1 connection driver: read a head, hand the exchange to the app side, write what
//! comes back, repeat while the connection is kept alive.
//!
//! This is the thin I/O shell around the sans-I/O engine of [`crate::http1`]. It owns the
//! socket once [`crate::protocol`] has chosen HTTP/1.1 for it (after any TLS handshake) and
//! decides, per exchange, the response framing and whether the connection survives. It does
//! not know Python: the app side speaks to it only through [`crate::exchange`].
//!
//! Over TLS the same loop runs over the encrypted [`Stream::Tls`], and files are read and
//! encrypted in pieces instead of sendfile.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::exchange::{
    self, AppEvent, Body, BodyPiece, EventReceiver, EventSender, Exchange, PeerAddr, Request,
    ServerInfo,
};
use crate::files;
use crate::http1::chunked::{encode_chunk_size, ChunkedDecoder, Decoded, LAST_CHUNK};
use crate::http1::response::{
    encode_error, encode_head, BodyFraming, HeadContext, ResponseHead, CONTINUE,
};
use crate::http1::{Framing, HeadParser, RequestError, RequestHead};
use crate::logging;
use crate::metrics;
use crate::protocol::{self, ConnectionSettings};
use crate::proxy_protocol::{self, ProxyHeader};
use crate::stream::{Rewind, Stream};
use crate::tls::TlsInfo;

/// Reads what the client sent into `buf`. A connection that holds no buffer (fresh, or idle
/// past [`IDLE_GRACE`]) takes one only when bytes are there to read, so waiting costs no
/// buffer memory. (tokio assumes an accepted socket readable: the first try may find nothing,
/// and the buffer is let go again before waiting.)
///
/// The one try is a single poll of `read_buf`, not `try_read_buf`: tokio's poll_read takes a
/// short read as proof that the socket is drained and clears its readiness, so the next read
/// waits for epoll; after `try_read_buf` it would first try a read that finds nothing (big
/// workload, where every connection is idle past the grace between its requests: ~0.7 empty
/// reads per request).
async fn read_into(stream: &mut Stream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() != 0 {
        return stream.read_buf(buf).await;
    }
    loop {
        stream.readable().await?;
        buf.reserve(READ_BUFFER);
        let mut read = std::pin::pin!(stream.read_buf(buf));
        let tried =
            std::future::poll_fn(|cx| Poll::Ready(std::future::Future::poll(read.as_mut(), cx)))
                .await;
        if let Poll::Ready(result) = tried {
            return result;
        }
        *buf = BytesMut::new();
    }
}

/// The read buffer a connection takes when bytes arrive, and the output buffer it takes for a
/// response. Neither is held while the connection waits for a request (see [`IDLE_GRACE`]).
const READ_BUFFER: usize = 8 * 1024;
const OUT_BUFFER: usize = 8 * 1024;
/// A connection idle between requests for this long gives its buffers back (16 KiB), so
/// thousands of idle keep-alive connections cost little memory; a busy one keeps them from one
/// request to the next (the wait for the next request is far shorter), so the hot path
/// allocates nothing. Buffers let go soon are reused by other connections from malloc's free
/// lists, which keeps the heap from growing during a flood of connections.
const IDLE_GRACE: Duration = Duration::from_millis(10);
/// A file sent over TLS is read and encrypted this much at a time: one TLS record's worth of
/// plaintext (RFC 8446 §5.1: at most 2^14 bytes).
const FILE_PIECE: usize = 16 * 1024;
/// Body pieces handed to the app are at most this big (one `read()` round trip each).
const BODY_PIECE: usize = 64 * 1024;
/// Content-Length bodies up to this size are read before the app is called.
const PREREAD: u64 = 64 * 1024;
/// Body bytes taken from events past which the connection writes instead of taking more.
const COALESCE_MAX: usize = 1024 * 1024;
/// Pieces up to this size are copied into the output buffer; larger ones are written from the
/// app's own buffer, in the same writev(2) as the bytes around them (stream workload, 10 KiB
/// chunks: copying them cost ~15 % of the worker's CPU in memmove).
const COALESCE_LIMIT: usize = 4 * 1024;
/// The most buffers handed to one writev(2) (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 64;
/// An unread request body is drained (read and discarded) up to this size to keep the
/// connection; anything larger closes it.
const DRAIN_LIMIT: u64 = 256 * 1024;
/// ... and for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// After a refusal, input is read and dropped for at most this long ...
const LINGER_TIME: Duration = Duration::from_secs(1);
/// ... or this many bytes, so the client sees the response rather than a reset.
const LINGER_BYTES: usize = 1 << 20;

/// How the rest of the request body is read.
enum BodyState {
    Done,
    Length(u64),
    /// The decoder, and the body bytes decoded so far (for `--max-request-body`).
    Chunked(ChunkedDecoder, u64),
    /// The body could not be read (malformed, client gone): the connection must close.
    Failed,
}

/// Where the response of the current exchange stands.
struct ResponseProgress {
    head_written: bool,
    framing: BodyFraming,
    keep_alive: bool,
    status: u16,
    body_bytes: u64,
    complete: bool,
    /// The access-log record (`None`: the log is off).
    access: Option<Box<logging::Record>>,
    /// Counted in the metrics until the exchange ends.
    flight: metrics::Flight,
}

struct Connection {
    /// The last exchange's link, reset, when its app side let go of it in time: the next
    /// exchange's (see [`EventReceiver::relink`]).
    spare_link: Option<(EventSender, EventReceiver)>,
    stream: Stream,
    peer: PeerAddr,
    server: Arc<ServerInfo>,
    settings: Arc<ConnectionSettings>,
    /// What the TLS handshake negotiated, for every exchange's environ (`None`: plaintext).
    tls: Option<Arc<TlsInfo>>,
    buf: BytesMut,
    /// Response bytes queued for the next write (head, chunk framing, small pieces).
    out: BytesMut,
    /// Queued writes that go before `out`: large pieces written from the app's own buffers.
    pending_large: Vec<Queued>,
    /// Exchanges completed on this connection.
    exchanges: u64,
    parser: HeadParser,
    /// The deadline of the wait for a head (keep-alive or header timeout). One timer for the
    /// connection's life, moved with `reset`: a timer made per wait registers with the
    /// runtime's timer wheel and deregisters again, under its lock, for every request, while
    /// tokio moves a registered timer to a later deadline without touching the wheel.
    head_timer: Pin<Box<tokio::time::Sleep>>,
    /// Completes when the worker begins a graceful stop. Made once: a watch channel's
    /// `changed()` enters and leaves the channel's waiter list (under its lock) every time it
    /// is made and dropped, and read_head waits on it once per request.
    stopping: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// `stopping` has completed (it must not be polled again).
    stop_seen: bool,
    /// `--http auto` on cleartext: the first bytes are checked for the HTTP/2 preface.
    sniff_preface: bool,
    /// The first bytes were the HTTP/2 preface: the connection goes to HTTP/2.
    preface_seen: bool,
}

/// The HTTP/2 client preface (RFC 9113 §3.4): its request line is no HTTP/1 method's, so a
/// connection that opens with it cannot be an HTTP/1.1 client's.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one HTTP/1.1 connection until it closes, fails, idles out or the worker shuts down.
/// With `sniff_preface`, a connection whose first bytes are the HTTP/2 preface is handed back
/// (`Some`), with those bytes to replay and the client's address, for [`crate::http2`].
pub(crate) async fn serve(
    stream: Stream,
    peer: PeerAddr,
    server: Arc<ServerInfo>,
    settings: Arc<ConnectionSettings>,
    tls: Option<Arc<TlsInfo>>,
    shutdown: watch::Receiver<bool>,
    sniff_preface: bool,
) -> Option<(Rewind, PeerAddr)> {
    let mut conn = Connection {
        spare_link: None,
        stream,
        peer,
        server,
        tls,
        parser: HeadParser::new(settings.limits),
        settings,
        // Taken when the client sends bytes and when a response is written (a connection that
        // never sends a request holds neither).
        buf: BytesMut::new(),
        out: BytesMut::new(),
        pending_large: Vec::new(),
        exchanges: 0,
        head_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        stopping: {
            let mut shutdown = shutdown.clone();
            Box::pin(async move {
                // An error means the sender is gone: the worker is stopping too.
                while shutdown.changed().await.is_ok() && !*shutdown.borrow() {}
            })
        },
        stop_seen: false,
        sniff_preface,
        preface_seen: false,
    };
    // Over TLS the PROXY header came before the handshake (see crate::protocol).
    if conn.tls.is_none()
        && protocol::expects_proxy_header(&conn.settings, peer)
        && !conn.read_proxy_header().await
    {
        return None;
    }
    loop {
        let head = match conn.read_head(&shutdown).await {
            Ok(Some(head)) => head,
            Ok(None) if conn.preface_seen => {
                let replay = std::mem::take(&mut conn.buf).freeze();
                return Some((Rewind::new(replay, conn.stream), conn.peer));
            }
            Ok(None) => break,
            Err(error) => {
                conn.refuse(error).await;
                return None;
            }
        };
        let shutting_down = *shutdown.borrow();
        let keep = conn.exchange(head, shutting_down).await;
        conn.exchanges += 1;
        if !keep {
            break;
        }
    }
    // Dropping the stream closes the socket, and close(2) sends the FIN after what is queued,
    // as shutdown(SHUT_WR) would: a shutdown first was one more system call per connection.
    // TLS says goodbye first (close_notify): without it, a client cannot tell the end of a
    // close-delimited body from a cut connection, and OpenSSL 3 clients report an error.
    if conn.stream.is_tls() {
        let _ = tokio::time::timeout(LINGER_TIME, conn.stream.shutdown()).await;
    }
    None
}

impl Connection {
    /// Reads the PROXY protocol header a trusted load balancer sends first and adopts the
    /// client address it names. False: malformed, missing or too slow; close without a word
    /// (the bytes are not HTTP, so no HTTP response is owed).
    async fn read_proxy_header(&mut self) -> bool {
        let deadline = Instant::now() + self.settings.header_timeout;
        loop {
            match proxy_protocol::parse(&self.buf) {
                Ok(Some((header, len))) => {
                    let _ = self.buf.split_to(len);
                    if let ProxyHeader::Proxied { source, .. } = header {
                        self.peer = PeerAddr::Ip(source);
                    }
                    return true;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!("closing connection: {error}");
                    return false;
                }
            }
            self.buf.reserve(512);
            let read =
                tokio::time::timeout_at(deadline.into(), self.stream.read_buf(&mut self.buf)).await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return false;
            }
        }
    }

    /// Answers a refused request and closes. The close lingers: the write side is shut and
    /// what the client still sends is read and dropped for a moment, so the client reads the
    /// response instead of a reset (a close with unread input sends RST, which can destroy
    /// the response in flight).
    async fn refuse(&mut self, error: RequestError) {
        tracing::debug!("refused request: {error}");
        let (status, reason) = error.status();
        metrics::slot().refused(status);
        encode_error(status, reason, &mut self.out);
        if self.flush().await.is_err() {
            return;
        }
        self.linger().await;
    }

    /// Shuts the write side, then discards input until EOF, 1 s or 1 MiB.
    async fn linger(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut discarded = 0usize;
        while discarded < LINGER_BYTES {
            self.buf.clear();
            self.buf.reserve(16 * 1024);
            match tokio::time::timeout_at(deadline.into(), self.stream.read_buf(&mut self.buf))
                .await
            {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
    }

    /// The scheme and client address the app sees, from trusted proxies' fields.
    fn client_view(&self, head: &RequestHead) -> Result<(&'static str, PeerAddr), RequestError> {
        protocol::client_view(&self.settings, self.peer, self.server.scheme, head)
    }

    /// Reads until a whole head is parsed. `Ok(None)`: the connection ends quietly (EOF between
    /// requests, idle timeout, shutdown while idle, or a head cut short by EOF).
    async fn read_head(
        &mut self,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<RequestHead>, RequestError> {
        let mut head_deadline: Option<Instant> = None;
        let mut idle_deadline: Option<Instant> = None;
        loop {
            if self.sniff_preface && !self.buf.is_empty() {
                let n = self.buf.len().min(PREFACE.len());
                if self.buf[..n] != PREFACE[..n] {
                    self.sniff_preface = false; // HTTP/1 after all
                } else if n == PREFACE.len() {
                    self.preface_seen = true;
                    return Ok(None);
                }
            }
            if !self.sniff_preface {
                if let Some(head) = self.parser.parse(&mut self.buf)? {
                    return Ok(Some(head));
                }
            }
            let idle = self.buf.is_empty();
            // Only a kept-alive connection between requests may be closed for a graceful stop.
            // A connection accepted moments ago has a request in flight (its bytes may not have
            // arrived yet): closing it would drop that request, so it is served, bounded by the
            // keep-alive timeout like any first request.
            let closable = idle && self.exchanges > 0;
            if closable && (self.stop_seen || *shutdown.borrow()) {
                return Ok(None);
            }
            let (deadline, wake_at) = if idle {
                let now = Instant::now();
                let deadline =
                    *idle_deadline.get_or_insert_with(|| now + self.settings.keep_alive_timeout);
                let holds_buffers = self.buf.capacity() != 0 || self.out.capacity() != 0;
                let wake_at = if holds_buffers {
                    deadline.min(now + IDLE_GRACE)
                } else {
                    deadline
                };
                (deadline, wake_at)
            } else {
                let deadline = *head_deadline
                    .get_or_insert_with(|| Instant::now() + self.settings.header_timeout);
                (deadline, deadline)
            };
            if self.buf.capacity() != 0 && self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_BUFFER);
            }
            self.head_timer.as_mut().reset(wake_at.into());
            let read = tokio::select! {
                read = read_into(&mut self.stream, &mut self.buf) => Some(read),
                () = self.head_timer.as_mut() => None,
                () = self.stopping.as_mut(), if closable && !self.stop_seen => {
                    self.stop_seen = true;
                    return Ok(None);
                }
            };
            match read {
                None if wake_at < deadline => {
                    // Idle past the grace: give the (empty) buffers and the spare exchange
                    // link back, and wait on.
                    self.buf = BytesMut::new();
                    self.out = BytesMut::new();
                    self.pending_large = Vec::new();
                    self.spare_link = None;
                }
                None if idle => return Ok(None),
                None => return Err(RequestError::Timeout),
                Some(Ok(0)) | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Runs one exchange. Returns whether the connection is kept for another request.
    async fn exchange(&mut self, head: RequestHead, shutting_down: bool) -> bool {
        if self.out.capacity() == 0 {
            self.out.reserve(OUT_BUFFER);
        }
        let (scheme, peer) = match self.client_view(&head) {
            Ok(view) => view,
            Err(error) => {
                self.refuse(error).await;
                return false;
            }
        };
        if let Framing::Length(n) = head.framing {
            if n > self.settings.max_request_body {
                self.refuse(RequestError::PayloadTooLarge).await;
                return false;
            }
        }
        let version = head.version;
        let is_head_request = head.is_head();
        let expect_continue = head.expect_continue;
        let wants_keep_alive = head.keep_alive;
        let access = logging::access_record(&head, peer);
        let mut body = match head.framing {
            Framing::None => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new(), 0),
        };
        let mut progress = ResponseProgress {
            head_written: false,
            framing: BodyFraming::Empty,
            keep_alive: wants_keep_alive && !shutting_down,
            status: 0,
            body_bytes: 0,
            complete: false,
            access,
            flight: metrics::Flight::start(),
        };
        let ctx = |keep_alive: bool, known_length: Option<u64>| HeadContext {
            version,
            is_head_request,
            keep_alive,
            known_length,
        };
        // A static mount answers here, on this thread, without the app (one lookup, no system
        // call, when no mount matches). The reply goes out as any response does.
        if let Some(reply) = self.settings.static_files.respond(&head) {
            metrics::slot().static_hits.add(1);
            let head_ctx = ctx(progress.keep_alive, reply.body.as_ref().map(|b| b.len));
            return self
                .static_exchange(reply, head_ctx, progress, body, expect_continue)
                .await;
        }
        // A Content-Length body up to PREREAD is read here, before the app runs, and goes with
        // the request: the app reads it without a round trip to this thread per piece (the
        // 64 KiB POST workload, one core: 12.9k -> 20.4k req/s, 2.3 -> 0.27 context switches
        // per request). Not with `Expect: 100-continue`, where the client waits for the app's
        // go-ahead. If the client stalls or leaves, the app gets what arrived and then the
        // read error, as if it had read the body itself.
        let mut initial_body = [Bytes::new(), Bytes::new()];
        let mut body_failed = false;
        if let BodyState::Length(n) = body {
            if !expect_continue && n <= PREREAD {
                let complete;
                (initial_body, complete) = self.preread(n as usize).await;
                if complete {
                    body = BodyState::Done;
                } else {
                    body = BodyState::Failed;
                    body_failed = true;
                }
            }
        }
        let (events_tx, mut events) = self.spare_link.take().unwrap_or_else(exchange::link);
        // The body channel only when the app may ask for more body (most requests have none).
        let more_body = !matches!(body, BodyState::Done);
        let (body_tx, body_rx) = more_body.then(|| mpsc::channel(1)).unzip();
        let exchange = Exchange {
            request: Request {
                head,
                peer,
                scheme,
                server: self.server.clone(),
                tls: self.tls.clone(),
            },
            initial_body,
            events: events_tx,
            body: body_rx,
        };
        // A body that failed to arrive closes the connection: say so in the response.
        progress.keep_alive &= !body_failed;
        if let Err(exchange) = self.settings.dispatcher.dispatch(exchange) {
            drop(exchange);
            tracing::warn!("app thread queue full: answering 503");
            encode_error(503, "Service Unavailable", &mut self.out);
            progress.status = 503;
            let _ = self.flush().await;
            self.log_access(&mut progress);
            return false;
        }
        // Answered during the dispatch (run inline): see exchange::batch.
        let mut answered_inline = events.has_events();
        let mut continue_sent = false;
        let mut body_error: Option<RequestError> = None;
        let deadline = self
            .settings
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
        self.count_request();
        // An event taken early while coalescing writes, handled next.
        let mut next: Option<AppEvent> = None;
        loop {
            let event = match next.take() {
                Some(event) => Some(event),
                None => tokio::select! {
                    event = events.recv() => event,
                    () = protocol::sleep_until_or_never(deadline) => {
                        // --request-timeout: the app thread is stuck; its stack is logged and the
                        // worker recycled on the app side. The client is not kept waiting.
                        tracing::warn!("request timed out: answering 504");
                        if !progress.head_written {
                            encode_error(504, "Gateway Timeout", &mut self.out);
                            progress.status = 504;
                            progress.head_written = true;
                            let _ = self.flush().await;
                        }
                        progress.keep_alive = false;
                        break;
                    }
                },
            };
            let Some(event) = event else {
                break;
            };
            // The request body turned out malformed (or too large) and nothing was sent yet:
            // whatever the app answers, the client gets the refusal (4xx, close).
            if let Some(error) = body_error.filter(|_| !progress.head_written) {
                if !matches!(event, AppEvent::ReadBody) {
                    self.write_refusal(error, &mut progress);
                    let _ = self.flush().await;
                    self.linger().await;
                    break;
                }
            }
            let result = match event {
                AppEvent::ReadBody => {
                    // RFC 9110 §10.1.1: no 100 once a final response has started; the client
                    // sends the body anyway after its own wait.
                    if expect_continue && !continue_sent && !progress.head_written {
                        continue_sent = true;
                        self.out.put_slice(CONTINUE);
                        if self.flush().await.is_err() {
                            body = BodyState::Failed;
                        }
                    }
                    let piece = self.read_body_piece(&mut body).await;
                    if let Err(error) = &piece {
                        body_error = Some(*error);
                    }
                    let piece = piece.unwrap_or(BodyPiece::Error("malformed request body"));
                    if let Some(body_tx) = &body_tx {
                        let _ = body_tx.send(piece).await;
                    }
                    Ok(())
                }
                AppEvent::Send {
                    head,
                    body: pieces,
                    end,
                } => {
                    let known_length = end.then(|| pieces.len() as u64);
                    let head_ctx = ctx(progress.keep_alive, known_length);
                    self.start_response(head, &mut progress, head_ctx);
                    let mut taken = self.queue_body(pieces, end, &mut progress);
                    // Body data the app has already queued goes out in the same write (a
                    // generator's chunks: one write per batch, not per chunk).
                    while !progress.complete && taken < COALESCE_MAX {
                        match events.try_recv() {
                            Some(AppEvent::Send {
                                head: None,
                                body: pieces,
                                end,
                            }) => taken += self.queue_body(pieces, end, &mut progress),
                            Some(other) => {
                                next = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    // See exchange::batch: the responses of a busy spell go out together.
                    if std::mem::take(&mut answered_inline)
                        && crate::exchange::batch::answered_inline()
                    {
                        tokio::task::yield_now().await;
                    }
                    let written = self.flush().await;
                    events.written(taken);
                    written
                }
                AppEvent::SendFile {
                    head,
                    file,
                    offset,
                    len,
                } => {
                    let head_ctx = ctx(progress.keep_alive, Some(len));
                    self.start_response(head, &mut progress, head_ctx);
                    self.send_file(file, offset, len, &mut progress).await
                }
                AppEvent::Fail => {
                    if !progress.head_written {
                        encode_error(500, "Internal Server Error", &mut self.out);
                        progress.status = 500;
                        progress.head_written = true;
                    }
                    progress.keep_alive = false;
                    let _ = self.flush().await;
                    break;
                }
            };
            if result.is_err() {
                progress.keep_alive = false;
                break;
            }
            if progress.complete {
                break;
            }
        }
        // Dropping the receiver tells an app still sending that the client is gone, so it
        // stops iterating and calls close(). A link the app side has let go of is kept for the
        // next exchange.
        match events.relink() {
            Some(sender) => self.spare_link = Some((sender, events)),
            None => drop(events),
        }
        if !progress.complete {
            progress.keep_alive = false;
            if !progress.head_written {
                // The app side ended without a word (it cannot normally): answer 500.
                encode_error(500, "Internal Server Error", &mut self.out);
                progress.status = 500;
                let _ = self.flush().await;
            }
        }
        if progress.keep_alive
            && !self
                .drain_body(&mut body, expect_continue && !continue_sent)
                .await
        {
            progress.keep_alive = false;
        }
        self.log_access(&mut progress);
        progress.keep_alive
    }

    /// Sends a static mount's reply (the rest of [`Connection::exchange`] for a static hit):
    /// the head, then the file with sendfile; then drains an unread request body. Returns
    /// whether the connection is kept.
    async fn static_exchange(
        &mut self,
        reply: files::Reply,
        head_ctx: HeadContext,
        mut progress: ResponseProgress,
        mut body: BodyState,
        expect_continue: bool,
    ) -> bool {
        self.count_request();
        self.start_response(Some(reply.head), &mut progress, head_ctx);
        let sent = match reply.body {
            Some(files::FileBody { file, offset, len }) => {
                self.send_file(file, offset, len, &mut progress).await
            }
            None => {
                self.finish_body(&mut progress);
                self.flush().await
            }
        };
        if sent.is_err() {
            progress.keep_alive = false;
        }
        // No 100 Continue was sent: a client still waiting to send its body is closed on.
        if progress.keep_alive && !self.drain_body(&mut body, expect_continue).await {
            progress.keep_alive = false;
        }
        self.log_access(&mut progress);
        progress.keep_alive
    }

    /// Counts an exchange for `--max-requests`: at the limit, the worker asks to be replaced.
    fn count_request(&self) {
        self.settings.budget.count();
    }

    /// Writes the head of the response (once), deciding its framing.
    fn start_response(
        &mut self,
        head: Option<ResponseHead>,
        progress: &mut ResponseProgress,
        ctx: HeadContext,
    ) {
        let Some(head) = head else {
            return;
        };
        if progress.head_written {
            return;
        }
        logging::access_response_head(&mut progress.access, &head);
        let (framing, keep_alive) = encode_head(&head, ctx, &mut self.out);
        progress.head_written = true;
        progress.status = head.status;
        progress.framing = framing;
        progress.keep_alive = keep_alive;
    }

    fn write_refusal(&mut self, error: RequestError, progress: &mut ResponseProgress) {
        let (status, reason) = error.status();
        encode_error(status, reason, &mut self.out);
        progress.status = status;
        progress.head_written = true;
        progress.keep_alive = false;
    }

    /// Queues the body of one `Send` event (ending the body if `end`); returns the bytes the
    /// app sent in it, as the exchange's link counted them.
    fn queue_body(&mut self, pieces: Body, end: bool, progress: &mut ResponseProgress) -> usize {
        let bytes = pieces.len();
        self.write_pieces(pieces, progress);
        if end {
            self.finish_body(progress);
        }
        bytes
    }

    /// Frames and queues body pieces; bytes past the app's Content-Length are dropped.
    fn write_pieces(&mut self, pieces: Body, progress: &mut ResponseProgress) {
        if !progress.head_written {
            return;
        }
        for piece in pieces.into_pieces() {
            if piece.is_empty() {
                continue;
            }
            match &mut progress.framing {
                BodyFraming::Empty => {}
                BodyFraming::Length(remaining) => {
                    let n = (piece.len() as u64).min(*remaining);
                    *remaining -= n;
                    progress.body_bytes += n;
                    if n > 0 {
                        self.queue(piece.slice(..n as usize));
                    }
                }
                BodyFraming::Chunked => {
                    progress.body_bytes += piece.len() as u64;
                    encode_chunk_size(&mut self.out, piece.len());
                    self.queue(piece);
                    self.out.put_slice(b"\r\n");
                }
                BodyFraming::CloseDelimited => {
                    progress.body_bytes += piece.len() as u64;
                    self.queue(piece);
                }
            }
        }
    }

    /// Ends the body: the last chunk, or a check that the promised length was sent.
    fn finish_body(&mut self, progress: &mut ResponseProgress) {
        match progress.framing {
            BodyFraming::Chunked => self.out.put_slice(LAST_CHUNK),
            // Fewer bytes than the app's Content-Length: the client must see a short
            // response, so the connection closes after it.
            BodyFraming::Length(remaining) if remaining > 0 => progress.keep_alive = false,
            BodyFraming::CloseDelimited => progress.keep_alive = false,
            _ => {}
        }
        progress.complete = true;
    }

    async fn send_file(
        &mut self,
        file: File,
        offset: u64,
        len: u64,
        progress: &mut ResponseProgress,
    ) -> io::Result<()> {
        let count = match progress.framing {
            BodyFraming::Length(remaining) => remaining.min(len),
            BodyFraming::Empty => 0,
            // A head sent earlier by write() chose these; the file is one more chunk.
            BodyFraming::Chunked | BodyFraming::CloseDelimited => len,
        };
        let chunked = progress.framing == BodyFraming::Chunked && count > 0;
        if chunked {
            encode_chunk_size(&mut self.out, usize::try_from(count).unwrap_or(usize::MAX));
        }
        let left = if self.stream.is_tls() {
            self.send_file_encrypted(&file, offset, count, progress)
                .await?
        } else {
            self.send_file_plain(&file, offset, count, progress).await?
        };
        if let BodyFraming::Length(remaining) = &mut progress.framing {
            *remaining -= count - left;
        }
        if left > 0 {
            // The file shrank under us: the promised length cannot be met; cut the response.
            progress.keep_alive = false;
            progress.complete = true;
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if chunked {
            self.out.put_slice(b"\r\n");
        }
        self.finish_body(progress);
        self.flush().await
    }

    /// Sends `count` bytes of `file` from `offset` with sendfile, after what is queued;
    /// returns how many could not be sent (the file is shorter than it was).
    async fn send_file_plain(
        &mut self,
        file: &File,
        offset: u64,
        count: u64,
        progress: &mut ResponseProgress,
    ) -> io::Result<u64> {
        if count > 0 && self.pending_large.is_empty() {
            self.flush_before_file().await?;
        } else {
            self.flush().await?;
        }
        let mut position = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut left = count;
        while left > 0 {
            let chunk = usize::try_from(left).unwrap_or(usize::MAX);
            let n = tokio::time::timeout(
                self.settings.write_timeout,
                self.stream.sendfile(file, &mut position, chunk),
            )
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            if n == 0 {
                break; // the file is shorter than it was
            }
            left -= n as u64;
            progress.body_bytes += n as u64;
        }
        Ok(left)
    }

    /// Over TLS the bytes must pass through rustls, so no sendfile: the file is read in pieces
    /// of one TLS record's worth ([`FILE_PIECE`]) into the output buffer (the first after the
    /// response head, in the same record) and each is encrypted and written before the next
    /// is read. A file of any size costs that one bounded buffer. The reads are `pread`s on
    /// the I/O thread, as sendfile's are: from the page cache, for the files a server sends.
    async fn send_file_encrypted(
        &mut self,
        file: &File,
        offset: u64,
        count: u64,
        progress: &mut ResponseProgress,
    ) -> io::Result<u64> {
        let mut position = offset;
        let mut left = count;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(FILE_PIECE).min(FILE_PIECE);
            let start = self.out.len();
            self.out.resize(start + want, 0);
            let read = file.read_at(&mut self.out[start..], position);
            let n = *read.as_ref().unwrap_or(&0);
            self.out.truncate(start + n);
            read?;
            if n == 0 {
                break; // the file is shorter than it was
            }
            position += n as u64;
            left -= n as u64;
            progress.body_bytes += n as u64;
            self.flush().await?;
        }
        Ok(left)
    }

    /// Writes the output buffer with `MSG_MORE` (see [`Stream::send_more`]): the file's bytes
    /// follow at once. Each send bounded by the write timeout.
    async fn flush_before_file(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            let n = tokio::time::timeout(
                self.settings.write_timeout,
                self.stream.send_more(&self.out[written..]),
            )
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            written += n;
        }
        self.out.clear();
        Ok(())
    }

    fn queue(&mut self, piece: Bytes) {
        if piece.len() <= COALESCE_LIMIT {
            self.out.extend_from_slice(&piece);
        } else {
            // Keep order: what is queued goes first, then the big piece, without a copy.
            if let Some(few) = Queued::inline(&self.out) {
                // A chunk's framing (the last chunk's CRLF and this one's size line): copied
                // out, so `out` stays one unshared buffer (a split shares it: an allocation
                // per chunk, and a new buffer once its room runs out).
                self.pending_large.push(few);
                self.out.clear();
            } else if !self.out.is_empty() {
                self.pending_large
                    .push(Queued::Shared(self.out.split().freeze()));
            }
            self.pending_large.push(Queued::Shared(piece));
        }
    }

    /// Writes everything queued, in order: one write for the output buffer alone, writev for
    /// large pieces and the bytes around them.
    async fn flush(&mut self) -> io::Result<()> {
        let timeout = self.settings.write_timeout;
        let result = if self.pending_large.is_empty() {
            write_all(&mut self.stream, &self.out, timeout).await
        } else {
            let result =
                write_all_vectored(&mut self.stream, &self.pending_large, &self.out, timeout).await;
            self.pending_large.clear();
            result
        };
        self.out.clear();
        if result.is_ok() && self.stream.is_tls() {
            // rustls takes plaintext as long as its buffer has room and may keep records that
            // the socket did not take: they must be out before the connection waits to read.
            return tokio::time::timeout(timeout, self.stream.flush())
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
        }
        result
    }

    /// Reads the next piece of the request body for the app.
    async fn read_body_piece(&mut self, body: &mut BodyState) -> Result<BodyPiece, RequestError> {
        loop {
            match body {
                BodyState::Done => return Ok(BodyPiece::End),
                BodyState::Failed => return Ok(BodyPiece::Error("request body unavailable")),
                BodyState::Length(0) => {
                    *body = BodyState::Done;
                    return Ok(BodyPiece::End);
                }
                BodyState::Length(remaining) => {
                    if !self.buf.is_empty() {
                        let n = (*remaining)
                            .min(self.buf.len() as u64)
                            .min(BODY_PIECE as u64);
                        *remaining -= n;
                        return Ok(BodyPiece::Data(self.buf.split_to(n as usize).freeze()));
                    }
                }
                BodyState::Chunked(decoder, received) => {
                    match decoder.decode(&mut self.buf, BODY_PIECE) {
                        Ok(Decoded::Data(data)) => {
                            *received += data.len() as u64;
                            if *received > self.settings.max_request_body {
                                *body = BodyState::Failed;
                                return Err(RequestError::PayloadTooLarge);
                            }
                            return Ok(BodyPiece::Data(data));
                        }
                        Ok(Decoded::End) => {
                            *body = BodyState::Done;
                            return Ok(BodyPiece::End);
                        }
                        Ok(Decoded::NeedMore) => {}
                        Err(error) => {
                            *body = BodyState::Failed;
                            return Err(error);
                        }
                    }
                }
            }
            // Need more bytes from the client.
            self.buf.reserve(BODY_PIECE);
            let read = tokio::time::timeout(
                self.settings.body_timeout,
                self.stream.read_buf(&mut self.buf),
            )
            .await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    *body = BodyState::Failed;
                    return Ok(BodyPiece::Error(
                        "client disconnected before the body was complete",
                    ));
                }
            }
        }
    }

    /// Reads a body of `n` bytes (within the body timeout per read): the part already in the
    /// read buffer, taken as it is, and the rest read into a buffer of its own. Growing the
    /// read buffer instead copied what it held (it shares its allocation with the head just
    /// parsed): ~48 KB per 64 KiB POST, as the buffer had grown to 64 KiB by then. Also
    /// returns false if the client stalls or goes away first (the pieces hold what arrived).
    ///
    /// The body's buffer has [`READ_BUFFER`] of room past the body, so the read that completes
    /// it is normally short, which tells tokio the socket is drained (a read that exactly fills
    /// the buffer does not, and the next request's read first found nothing: post workload,
    /// ~1 empty read per request). Bytes read past the body (a pipelined request) become the
    /// read buffer, in order.
    async fn preread(&mut self, n: usize) -> ([Bytes; 2], bool) {
        if self.buf.len() >= n {
            return ([self.buf.split_to(n).freeze(), Bytes::new()], true);
        }
        let first = self.buf.split().freeze();
        let want = n - first.len();
        let mut rest = BytesMut::with_capacity(want + READ_BUFFER);
        let mut complete = true;
        while rest.len() < want {
            let read =
                tokio::time::timeout(self.settings.body_timeout, self.stream.read_buf(&mut rest))
                    .await;
            if !matches!(read, Ok(Ok(got)) if got > 0) {
                complete = false;
                break;
            }
        }
        if rest.len() > want {
            self.buf = rest.split_off(want);
        }
        ([first, rest.freeze()], complete)
    }

    /// After the response: reads and discards an unread body so the next request can be
    /// parsed. Returns false if the connection must close instead (too big, too slow,
    /// malformed, or the client is still waiting for `100 Continue`).
    async fn drain_body(&mut self, body: &mut BodyState, awaiting_continue: bool) -> bool {
        match body {
            BodyState::Done => return true,
            BodyState::Failed => return false,
            _ if awaiting_continue => return false,
            BodyState::Length(n) if *n > DRAIN_LIMIT => return false,
            _ => {}
        }
        let deadline = Instant::now() + DRAIN_TIME;
        let mut drained = 0u64;
        loop {
            let piece = tokio::time::timeout_at(deadline.into(), self.read_body_piece(body)).await;
            match piece {
                Ok(Ok(BodyPiece::Data(data))) => {
                    drained += data.len() as u64;
                    if drained > DRAIN_LIMIT {
                        return false;
                    }
                }
                Ok(Ok(BodyPiece::End)) => return true,
                _ => return false,
            }
        }
    }

    fn log_access(&self, progress: &mut ResponseProgress) {
        progress.flight.finish(progress.status);
        logging::log_access(progress.access.take(), progress.status, progress.body_bytes);
    }
}

/// One write that makes progress, or an error: `WriteZero`, or `TimedOut` when the socket
/// stays unwritable for `timeout` (`--write-timeout`: a client that stopped reading must not
/// hold the exchange forever). The write is tried once before the timeout is armed: writes
/// nearly always complete at once, and the timeout reads the clock and sets up a timer.
async fn write_some(
    stream: &mut Stream,
    timeout: Duration,
    mut write: impl FnMut(Pin<&mut Stream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
) -> io::Result<usize> {
    let now = std::future::poll_fn(|cx| Poll::Ready(write(Pin::new(&mut *stream), cx))).await;
    let n = match now {
        Poll::Ready(result) => result?,
        Poll::Pending => {
            let later = std::future::poll_fn(|cx| write(Pin::new(&mut *stream), cx));
            tokio::time::timeout(timeout, later)
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??
        }
    };
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}

/// Writes all of `buf` (each write bounded by `timeout`, see [`write_some`]).
async fn write_all(stream: &mut Stream, mut buf: &[u8], timeout: Duration) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write_some(stream, timeout, |s, cx| s.poll_write(cx, buf)).await?;
        buf = &buf[n..];
    }
    Ok(())
}

/// A write queued before the output buffer (see [`Connection::queue`]).
enum Queued {
    /// A large piece, written from the app's own buffer.
    Shared(Bytes),
    /// A few bytes queued before one (chunk framing), held inline.
    Inline([u8; QUEUED_INLINE], u8),
}

/// Enough for a CRLF and a chunk-size line of a 64-bit length.
const QUEUED_INLINE: usize = 24;

impl Queued {
    /// `bytes` held inline, if they are few (and not none).
    fn inline(bytes: &[u8]) -> Option<Queued> {
        if bytes.is_empty() || bytes.len() > QUEUED_INLINE {
            return None;
        }
        let mut buf = [0u8; QUEUED_INLINE];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(Queued::Inline(buf, bytes.len() as u8))
    }
}

impl std::ops::Deref for Queued {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Queued::Shared(bytes) => bytes,
            Queued::Inline(buf, len) => &buf[..usize::from(*len)],
        }
    }
}

/// Writes `pieces` and then `tail` with writev(2), [`MAX_IOVECS`] buffers at a time.
async fn write_all_vectored(
    stream: &mut Stream,
    pieces: &[Queued],
    tail: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .map(|piece| &piece[..])
        .chain(std::iter::once(tail))
        .filter(|piece| !piece.is_empty())
        .map(IoSlice::new)
        .collect();
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        let batch = &bufs[..bufs.len().min(MAX_IOVECS)];
        let n = write_some(stream, timeout, |s, cx| s.poll_write_vectored(cx, batch)).await?;
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}
