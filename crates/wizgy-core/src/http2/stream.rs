//! One HTTP/2 stream: its request becomes a [`RequestHead`] and one exchange (or a static
//! file), and what the app side sends back becomes HEADERS and DATA frames, within the
//! client's flow-control windows.
//!
//! The mapping, as the environ sees it (RFC 9113 §8.3): `:method` is the method, `:path` the
//! target (PATH_INFO, QUERY_STRING and RAW_URI are decoded from it as on HTTP/1.1),
//! `:authority` the Host field (a `host` field is dropped when both came, §8.3.1), `cookie`
//! fields joined with `; ` (§8.2.3), `SERVER_PROTOCOL` `HTTP/2`. A body is `Length` framed
//! with a `content-length` (h2 resets a stream whose DATA contradicts it) and read until its
//! end otherwise; trailers are ignored.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use tokio::sync::mpsc;

use super::ConnectionContext;
use crate::exchange::{self, AppEvent, Body, BodyPiece, EventReceiver, Exchange, Request};
use crate::files;
use crate::http1::date::with_http_date;
use crate::http1::response::ResponseHead;
use crate::http1::{Framing, RequestError, RequestHead, Version};
use crate::logging;
use crate::metrics;
use crate::protocol;

/// Body pieces handed to the app are at most this big: DATA frames that have arrived are
/// joined up to it (one `read()` round trip to the I/O thread each, as on HTTP/1.1).
const BODY_PIECE: usize = 64 * 1024;
/// A file is read and sent this much at a time (one DATA frame at the default frame size).
const FILE_PIECE: usize = 16 * 1024;

/// Response fields HTTP/2 forbids (RFC 9113 §8.2.2) that PEP 3333 lets through: dropped.
/// (The others, Connection, Keep-Alive, Transfer-Encoding and Upgrade, an app cannot send:
/// [`ResponseHead::push`] refuses hop-by-hop fields.)
const CONNECTION_SPECIFIC: [&[u8]; 1] = [b"proxy-connection"];

/// Where the response stands.
enum Responder {
    /// Nothing sent yet.
    Head(SendResponse<Bytes>),
    /// The head is out; the body goes on this stream.
    Body {
        send: SendStream<Bytes>,
        /// Content-Length bytes still owed (`None`: no length was promised).
        remaining: Option<u64>,
    },
    /// Complete, reset or failed.
    Done,
}

/// The outcome of one stream, for the access log.
struct Outcome {
    status: u16,
    body_bytes: u64,
    /// The access-log record (`None`: the log is off).
    access: Option<Box<logging::Record>>,
    /// Counted in the metrics until the stream ends.
    flight: metrics::Flight,
}

/// Runs one stream to its end: the exchange, or a static file, or a refusal.
pub(super) async fn run(
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    context: Arc<ConnectionContext>,
) {
    let settings = &context.settings;
    let (parts, recv) = request.into_parts();
    let head = match request_head(&parts, recv.is_end_stream(), settings) {
        Ok(head) => head,
        Err(error) => {
            let (status, _) = error.status();
            metrics::slot().refused(status);
            let mut responder = Responder::Head(respond);
            send_error(&mut responder, status);
            return;
        }
    };
    let (scheme, peer) =
        match protocol::client_view(settings, context.peer, context.server.scheme, &head) {
            Ok(view) => view,
            Err(error) => {
                metrics::slot().refused(error.status().0);
                send_error(&mut Responder::Head(respond), error.status().0);
                return;
            }
        };
    let access = logging::access_record(&head, peer);
    settings.budget.count();
    let mut stream = Stream {
        responder: Responder::Head(respond),
        is_head_request: head.is_head(),
        write_timeout: settings.write_timeout,
        outcome: Outcome {
            status: 0,
            body_bytes: 0,
            access,
            flight: metrics::Flight::start(),
        },
    };
    if let Framing::Length(n) = head.framing {
        if n > settings.max_request_body {
            stream.error(413);
            log(&mut stream.outcome);
            return;
        }
    }
    if let Some(reply) = settings.static_files.respond(&head) {
        metrics::slot().static_hits.add(1);
        stream.static_reply(reply).await;
        log(&mut stream.outcome);
        return;
    }
    let (events_tx, mut events) = exchange::link();
    let body_done = matches!(head.framing, Framing::None);
    let (body_tx, body_rx) = (!body_done).then(|| mpsc::channel(1)).unzip();
    let mut body = BodyReader {
        recv,
        received: 0,
        done: body_done,
        limit: settings.max_request_body,
        timeout: settings.body_timeout,
    };
    let exchange = Exchange {
        request: Request {
            head,
            peer,
            scheme,
            server: context.server.clone(),
            tls: context.tls.clone(),
        },
        initial_body: [Bytes::new(), Bytes::new()],
        events: events_tx,
        body: body_rx,
    };
    if let Err(exchange) = settings.dispatcher.dispatch(exchange) {
        drop(exchange);
        tracing::warn!("app thread queue full: answering 503");
        stream.error(503);
        log(&mut stream.outcome);
        return;
    }
    let deadline = settings
        .request_timeout
        .map(|t| tokio::time::Instant::now() + t);
    let mut body_error: Option<RequestError> = None;
    // The exchange was cut short while the app side may still be running it.
    let mut cancelled = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            reason = stream.reset() => {
                tracing::debug!("HTTP/2 stream reset by the client ({reason:?})");
                context
                    .cancelled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stream.responder = Responder::Done;
                cancelled = true;
                break;
            }
            () = protocol::sleep_until_or_never(deadline) => {
                tracing::warn!("request timed out: answering 504");
                stream.fail(504);
                cancelled = true;
                break;
            }
        };
        let Some(event) = event else {
            // The app side ended without a word (it cannot normally): 500, or a reset.
            stream.fail(500);
            break;
        };
        // A body that turned out too large, before anything was sent: the client gets 413.
        if let Some(error) = body_error.filter(|_| stream.head_pending()) {
            if !matches!(event, AppEvent::ReadBody) {
                stream.fail(error.status().0);
                break;
            }
        }
        let sent = match event {
            AppEvent::ReadBody => {
                let piece = body.next_piece().await;
                if let Err(error) = &piece {
                    body_error = Some(*error);
                }
                let piece = piece.unwrap_or(BodyPiece::Error("request body too large"));
                if let Some(body_tx) = &body_tx {
                    let _ = body_tx.send(piece).await;
                }
                Ok(())
            }
            AppEvent::Send { head, body, end } => {
                let bytes = body.len();
                let known = end.then_some(bytes as u64);
                let result = stream.send(head, known, body, end).await;
                events.written(bytes);
                result
            }
            AppEvent::SendFile {
                head,
                file,
                offset,
                len,
            } => stream.send_file(head, file, offset, len).await,
            AppEvent::Fail => {
                stream.fail(500);
                break;
            }
        };
        if sent.is_err() {
            stream.cut();
            break;
        }
        if matches!(stream.responder, Responder::Done) {
            break;
        }
    }
    // The app side may still hold the link: close it, so its sends fail and it calls the
    // iterable's close().
    events.close();
    drop(body_tx);
    // The last handle of a stream whose body the client is still sending: h2 resets it
    // (RST_STREAM CANCEL), so the client stops (RFC 9113 §8.1), and gives the window back.
    drop(body);
    drop(stream.responder);
    log(&mut stream.outcome);
    if cancelled {
        // A reset stream or a timeout: its app call may go on for a while, and until it lets
        // go the exchange still counts against the connection (see super). A response that
        // ended normally is not waited for: the app side is finishing (the iterable's
        // close()), and waiting cost one more wake of this task per stream.
        wait_released(&mut events).await;
    }
}

/// Waits until every sender of the (closed) link is gone; bounded by the time the app side
/// needs to notice, which the request timeout already bounds.
async fn wait_released(events: &mut EventReceiver) {
    while events.recv().await.is_some() {}
}

fn log(outcome: &mut Outcome) {
    outcome.flight.finish(outcome.status);
    logging::log_access(outcome.access.take(), outcome.status, outcome.body_bytes);
}

/// The request head of a stream, held to the HTTP/1 head limits (431 past them).
fn request_head(
    parts: &http::request::Parts,
    end_of_stream: bool,
    settings: &protocol::ConnectionSettings,
) -> Result<RequestHead, RequestError> {
    let limits = settings.limits;
    let target = match (parts.uri.path_and_query(), parts.uri.authority()) {
        (Some(path), _) => path.as_str(),
        // CONNECT names only an authority (RFC 9113 §8.5).
        (None, Some(authority)) => authority.as_str(),
        (None, None) => "/",
    };
    if target.len() > limits.max_request_line {
        return Err(RequestError::UriTooLong);
    }
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(parts.headers.len() + 1);
    if let Some(authority) = authority {
        fields.push((b"host", authority));
    }
    let mut content_length: Option<u64> = None;
    for (name, value) in &parts.headers {
        let name_bytes = name.as_str().as_bytes();
        let value = value.as_bytes();
        if name_bytes.len() + value.len() + 2 > limits.max_field_size {
            return Err(RequestError::HeaderFieldsTooLarge("a field is too long"));
        }
        match name_bytes {
            b"host" if authority.is_some() => continue,
            b"cookie" => {
                cookies.push(value);
                continue;
            }
            b"content-length" => {
                // h2 has checked it is a number and will hold the DATA frames to it.
                content_length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            }
            _ => {}
        }
        fields.push((name_bytes, value));
    }
    let joined_cookies = cookies.join(&b"; "[..]);
    if !cookies.is_empty() {
        fields.push((b"cookie", &joined_cookies));
    }
    if fields.len() > limits.max_fields {
        return Err(RequestError::HeaderFieldsTooLarge("too many fields"));
    }
    let framing = match content_length {
        _ if end_of_stream => Framing::None,
        Some(n) => Framing::Length(n),
        // Read to the end of the stream, as a chunked body is.
        None => Framing::Chunked,
    };
    Ok(RequestHead::assemble(
        parts.method.as_str().as_bytes(),
        target.as_bytes(),
        fields.into_iter(),
        Version::Http2,
        framing,
    ))
}

/// The request body, read as the app asks for it: the stream's window is given back only for
/// what the app has been handed, so an app that does not read keeps the client waiting
/// instead of wizgy buffering the upload.
struct BodyReader {
    recv: RecvStream,
    received: u64,
    done: bool,
    limit: u64,
    timeout: Duration,
}

impl BodyReader {
    async fn next_piece(&mut self) -> Result<BodyPiece, RequestError> {
        if self.done {
            return Ok(BodyPiece::End);
        }
        let first = match tokio::time::timeout(self.timeout, self.recv.data()).await {
            Ok(Some(Ok(data))) => data,
            Ok(None) => {
                self.done = true;
                return Ok(BodyPiece::End);
            }
            Ok(Some(Err(error))) => {
                tracing::debug!("HTTP/2 request body failed: {error}");
                self.done = true;
                return Ok(BodyPiece::Error("the request body was cut off"));
            }
            Err(_) => {
                self.done = true;
                return Ok(BodyPiece::Error("the client sent no body for too long"));
            }
        };
        // DATA frames that are already here join the first, up to a piece.
        let mut piece = BytesMut::new();
        let mut taken = first.len();
        let mut single = Some(first);
        while taken < BODY_PIECE {
            let more = std::future::poll_fn(|cx| {
                Poll::Ready(match self.recv.poll_data(cx) {
                    Poll::Ready(Some(Ok(data))) => Some(data),
                    _ => None,
                })
            })
            .await;
            let Some(more) = more else { break };
            if let Some(first) = single.take() {
                piece.extend_from_slice(&first);
            }
            taken += more.len();
            piece.extend_from_slice(&more);
        }
        let data = single.unwrap_or_else(|| piece.freeze());
        let _ = self.recv.flow_control().release_capacity(data.len());
        self.received += data.len() as u64;
        if self.received > self.limit {
            self.done = true;
            return Err(RequestError::PayloadTooLarge);
        }
        if data.is_empty() && self.recv.is_end_stream() {
            self.done = true;
            return Ok(BodyPiece::End);
        }
        Ok(BodyPiece::Data(data))
    }
}

/// The response side of a stream.
struct Stream {
    responder: Responder,
    is_head_request: bool,
    write_timeout: Duration,
    outcome: Outcome,
}

impl Stream {
    fn head_pending(&self) -> bool {
        matches!(self.responder, Responder::Head(_))
    }

    /// Completes when the client resets the stream.
    async fn reset(&mut self) -> Reason {
        let reason = std::future::poll_fn(|cx| match &mut self.responder {
            Responder::Head(respond) => respond.poll_reset(cx),
            Responder::Body { send, .. } => send.poll_reset(cx),
            Responder::Done => Poll::Pending,
        })
        .await;
        reason.unwrap_or(Reason::CANCEL)
    }

    /// A response wizgy writes itself (`NNN Reason`, plain text), if nothing was sent yet.
    fn error(&mut self, status: u16) {
        self.outcome.status = status;
        send_error(&mut self.responder, status);
    }

    /// The exchange failed: an error response if nothing was sent yet, otherwise a reset, so
    /// the client never takes a broken response for a complete one.
    fn fail(&mut self, status: u16) {
        if self.head_pending() {
            self.error(status);
        } else {
            self.cut();
        }
    }

    /// Ends the stream with RST_STREAM INTERNAL_ERROR (a response that cannot be completed).
    fn cut(&mut self) {
        match std::mem::replace(&mut self.responder, Responder::Done) {
            Responder::Head(mut respond) => respond.send_reset(Reason::INTERNAL_ERROR),
            Responder::Body { mut send, .. } => send.send_reset(Reason::INTERNAL_ERROR),
            Responder::Done => {}
        }
    }

    /// Sends the head (if this event carries the first) and body pieces; ends the stream with
    /// `end`. `known` is the whole body's length when this event holds all of it.
    async fn send(
        &mut self,
        head: Option<ResponseHead>,
        known: Option<u64>,
        body: Body,
        end: bool,
    ) -> Result<(), h2::Error> {
        if let Some(head) = head {
            let empty = end && body.is_empty();
            self.start(&head, known, empty)?;
        }
        let mut pieces = body.into_pieces().filter(|p| !p.is_empty()).peekable();
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            self.send_data(piece, end && last).await?;
        }
        if end {
            self.finish();
        }
        Ok(())
    }

    /// Sends the response head; `empty`: nothing follows (END_STREAM on HEADERS).
    fn start(
        &mut self,
        head: &ResponseHead,
        known: Option<u64>,
        empty: bool,
    ) -> Result<(), h2::Error> {
        let Responder::Head(_) = &self.responder else {
            return Ok(());
        };
        logging::access_response_head(&mut self.outcome.access, head);
        let bodiless = head.is_bodiless_status() || self.is_head_request;
        let length = head.content_length.or(known);
        let mut response = http::Response::new(());
        *response.status_mut() =
            http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::OK);
        let headers = response.headers_mut();
        for (name, value) in head.fields() {
            if CONNECTION_SPECIFIC
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
            {
                continue;
            }
            // ResponseHead::push checked both (a token; no CR, LF or NUL).
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        let (has_server, has_date) = head.has_server_and_date();
        if !has_server {
            headers.insert(http::header::SERVER, HeaderValue::from_static("wizgy"));
        }
        if !has_date {
            if let Ok(date) = with_http_date(HeaderValue::from_bytes) {
                headers.insert(http::header::DATE, date);
            }
        }
        // As on HTTP/1.1: the length the app promised (a HEAD response's too, RFC 9110
        // §9.3.2), or the body's when all of it is known; none on 204 and 1xx.
        let length = length.filter(|_| head.status != 204);
        if let Some(n) = length {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        let Responder::Head(mut respond) = std::mem::replace(&mut self.responder, Responder::Done)
        else {
            return Ok(());
        };
        self.outcome.status = head.status;
        // HEAD, 204 and 304 end on HEADERS: no Body state exists for them.
        let end = bodiless || empty || length == Some(0);
        let send = respond.send_response(response, end)?;
        self.responder = if end {
            Responder::Done
        } else {
            Responder::Body {
                send,
                remaining: head.content_length,
            }
        };
        Ok(())
    }

    /// Sends one piece of the body within the client's windows (waiting for window for at
    /// most the write timeout each time); bytes past the promised Content-Length are dropped.
    async fn send_data(&mut self, mut data: Bytes, end: bool) -> Result<(), h2::Error> {
        let timeout = self.write_timeout;
        let Responder::Body { send, remaining } = &mut self.responder else {
            return Ok(());
        };
        if let Some(left) = remaining {
            data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
            *left -= data.len() as u64;
        }
        // END_STREAM goes with the last bytes only if the promise is kept; finish() ends a
        // stream that fell short with a reset instead.
        let end = end && remaining.map_or(true, |left| left == 0);
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let capacity =
                tokio::time::timeout(timeout, std::future::poll_fn(|cx| send.poll_capacity(cx)))
                    .await;
            let granted = match capacity {
                Ok(Some(Ok(n))) => n,
                Ok(Some(Err(error))) => return Err(error),
                Ok(None) => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
                Err(_) => {
                    tracing::debug!("HTTP/2 client granted no window for the write timeout");
                    return Err(h2::Error::from(Reason::FLOW_CONTROL_ERROR));
                }
            };
            if granted == 0 {
                continue;
            }
            let chunk = data.split_to(granted.min(data.len()));
            self.outcome.body_bytes += chunk.len() as u64;
            send.send_data(chunk, end && data.is_empty())?;
            if end && data.is_empty() {
                self.responder = Responder::Done;
                return Ok(());
            }
        }
        Ok(())
    }

    /// The app's response is complete: END_STREAM, or a reset if fewer bytes than the
    /// Content-Length it promised were sent.
    fn finish(&mut self) {
        match std::mem::replace(&mut self.responder, Responder::Done) {
            Responder::Body {
                mut send,
                remaining,
            } => {
                if remaining.is_some_and(|left| left > 0) {
                    send.send_reset(Reason::INTERNAL_ERROR);
                } else {
                    let _ = send.send_data(Bytes::new(), true);
                }
            }
            Responder::Head(respond) => self.responder = Responder::Head(respond),
            Responder::Done => {}
        }
    }

    /// A file (wsgi.file_wrapper, or a static file): read in pieces on this thread, as the
    /// TLS path of HTTP/1.1 does, each sent within the windows before the next is read.
    async fn send_file(
        &mut self,
        head: Option<ResponseHead>,
        file: File,
        offset: u64,
        len: u64,
    ) -> Result<(), h2::Error> {
        if let Some(head) = head {
            self.start(&head, Some(len), len == 0)?;
        }
        let mut position = offset;
        let mut left = len;
        while left > 0 && matches!(self.responder, Responder::Body { .. }) {
            let want = usize::try_from(left).unwrap_or(FILE_PIECE).min(FILE_PIECE);
            let mut buf = vec![0u8; want];
            let n = file.read_at(&mut buf, position).unwrap_or(0);
            if n == 0 {
                break; // the file shrank: finish() resets the stream
            }
            buf.truncate(n);
            position += n as u64;
            left -= n as u64;
            self.send_data(Bytes::from(buf), left == 0).await?;
        }
        self.finish();
        Ok(())
    }

    /// A static mount's reply.
    async fn static_reply(&mut self, reply: files::Reply) {
        let sent = match reply.body {
            Some(files::FileBody { file, offset, len }) => {
                self.send_file(Some(reply.head), file, offset, len).await
            }
            None => {
                self.send(Some(reply.head), Some(0), Body::empty(), true)
                    .await
            }
        };
        if sent.is_err() {
            self.cut();
        }
    }
}

/// `NNN Reason` as plain text, the body of wizgy's own error responses.
fn send_error(responder: &mut Responder, status: u16) {
    let Responder::Head(respond) = std::mem::replace(responder, Responder::Done) else {
        return;
    };
    let mut respond = respond;
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let text = format!("{} {}\n", status, code.canonical_reason().unwrap_or(""));
    let response = http::Response::builder()
        .status(code)
        .header(http::header::SERVER, "wizgy")
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONTENT_LENGTH, text.len())
        .body(());
    let Ok(response) = response else { return };
    if let Ok(mut send) = respond.send_response(response, false) {
        let _ = send.send_data(Bytes::from(text), true);
    }
}
