//! The contract between a connection (async, in the I/O thread) and the code that runs the app
//! (an app thread, in the binding crate): one [`Exchange`] per request, events back.
//!
//! The app side never touches the socket: it sends [`AppEvent`]s (response data, body reads)
//! over the exchange's [`link`] and receives [`BodyPiece`]s. Both ways are bounded, so a slow
//! client slows the app down (backpressure) instead of buffering without limit.

use std::collections::VecDeque;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::http1::response::ResponseHead;
use crate::http1::RequestHead;

/// Where a listener is reachable, as the environ reports it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `SERVER_NAME`: the bound host (or `localhost` for a unix socket).
    pub name: String,
    /// `SERVER_PORT`, as a string (empty for a unix socket until a Host header says otherwise).
    pub port: String,
    /// `wsgi.url_scheme`.
    pub scheme: &'static str,
}

/// The client's address.
#[derive(Debug, Clone, Copy)]
pub enum PeerAddr {
    /// The socket peer, or the client a PROXY protocol header named.
    Ip(SocketAddr),
    /// The client address a trusted proxy reported in X-Forwarded-For / Forwarded (no port).
    Reported(IpAddr),
    /// A unix-socket peer has no address.
    Unix,
}

/// Everything the app side needs to build the environ.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub peer: PeerAddr,
    /// `wsgi.url_scheme`: the listener's, or what a trusted proxy reported.
    pub scheme: &'static str,
    pub server: Arc<ServerInfo>,
    /// The connection's TLS (`HTTPS`, `SSL_*` in the environ); `None` over plaintext.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
}

/// A request handed to the app side, with the channels of its exchange.
#[derive(Debug)]
pub struct Exchange {
    pub request: Request,
    /// Body bytes read before the app was called (for a small Content-Length body, all of it),
    /// in up to two pieces: what arrived with the head, and the rest, read into a buffer of its
    /// own. Joining them would be a copy; the app's `bytes` object is made from both at once.
    pub initial_body: [Bytes; 2],
    /// Events to the connection.
    pub events: EventSender,
    /// Body pieces from the connection, in answer to [`AppEvent::ReadBody`]; `None` when the
    /// whole body is in `initial_body` (no more may be asked for).
    pub body: Option<mpsc::Receiver<BodyPiece>>,
}

/// The response body bytes of one [`AppEvent::Send`]. One piece (a chunk of the app's
/// iterable, a one-item list, a `write()`) is held without a `Vec`: a generator's chunks were an
/// allocation each on the app thread and a free on the I/O thread.
#[derive(Debug)]
pub enum Body {
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Body {
    /// No bytes.
    pub fn empty() -> Self {
        Body::Many(Vec::new())
    }

    /// Adds `piece` after the others (a `Vec` only from the second piece on).
    pub fn push(&mut self, piece: Bytes) {
        match self {
            Body::Many(pieces) if pieces.is_empty() => *self = Body::One(piece),
            Body::One(first) => *self = Body::Many(vec![std::mem::take(first), piece]),
            Body::Many(pieces) => pieces.push(piece),
        }
    }

    /// Bytes in all pieces.
    pub fn len(&self) -> usize {
        match self {
            Body::One(piece) => piece.len(),
            Body::Many(pieces) => pieces.iter().map(Bytes::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order.
    pub fn into_pieces(self) -> impl Iterator<Item = Bytes> {
        let (one, many) = match self {
            Body::One(piece) => (Some(piece), Vec::new()),
            Body::Many(pieces) => (None, pieces),
        };
        one.into_iter().chain(many)
    }
}

/// What the app side tells the connection.
#[derive(Debug)]
pub enum AppEvent {
    /// Response data. `head` is `Some` on the first event of a response; `end` marks the last.
    Send {
        head: Option<ResponseHead>,
        body: Body,
        end: bool,
    },
    /// `len` bytes of `file` from `offset`, sent with sendfile; always the end of the response.
    SendFile {
        head: Option<ResponseHead>,
        file: File,
        offset: u64,
        len: u64,
    },
    /// The app failed: a 500 if no head was sent yet, otherwise the connection is cut so the
    /// client never takes a broken response for a complete one.
    Fail,
    /// The app wants the next piece of the request body (the first one sends `100 Continue`).
    ReadBody,
}

/// The connection's answer to [`AppEvent::ReadBody`].
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPiece {
    Data(Bytes),
    /// The body is complete.
    End,
    /// The body cannot be read: the client went away, timed out or sent malformed framing.
    Error(&'static str),
}

/// Runs exchanges; implemented by the binding crate's pool of app threads.
pub trait Dispatch: Send + Sync + 'static {
    /// Queues `exchange`; gives it back if the queue is full (the connection answers 503).
    fn dispatch(&self, exchange: Exchange) -> Result<(), Box<Exchange>>;
}

/// Creates the link of one exchange: the app side's [`EventSender`] and the connection's
/// [`EventReceiver`].
pub fn link() -> (EventSender, EventReceiver) {
    let link = Arc::new(Link {
        state: Mutex::new(LinkState::default()),
        room: Condvar::new(),
        senders: AtomicUsize::new(1),
    });
    (EventSender(link.clone()), EventReceiver(link))
}

/// Events from an exchange's app side to its connection, bounded twice: by count
/// ([`Link::EVENTS`]) and by the response bytes queued and not yet written ([`Link::BYTES`]).
/// Past either, the app thread waits (backpressure).
///
/// Why bytes: the events are what a generator yields, so a count bounds nothing (32 events of
/// 64 KiB per exchange, 64 exchanges: 128 MiB), and a small count makes the app thread stop
/// and be woken every few chunks (stream workload: 32 events of 10 KiB cost 3.8 context
/// switches and 280 µs of CPU per 1 MiB response; batches of up to a budget, 0.4 and 218 µs).
///
/// Why not a tokio mpsc channel plus a byte counter (what this replaced): most exchanges send
/// one event, and the channel allocated a 2.5 KiB block of slots per exchange (whose free
/// made glibc consolidate its fast bins each time) and a second shared object for the bytes.
/// One mutex-guarded queue does both, with one allocation (hello, perf: malloc and free from
/// 6 % to 3 % of the worker's samples; req/s the same within this machine's noise).
#[derive(Debug)]
struct Link {
    state: Mutex<LinkState>,
    /// The app thread waits here for room.
    room: Condvar,
    /// Live [`EventSender`]s: when the last goes, the receiver sees the end.
    senders: AtomicUsize,
}

#[derive(Debug, Default)]
struct LinkState {
    events: VecDeque<AppEvent>,
    /// Response bytes in `events` or taken by the connection and not yet written.
    queued: usize,
    /// An app thread waits for room.
    waiting: bool,
    /// The connection is gone: sends fail.
    closed: bool,
    /// The connection's task, waiting for an event.
    receiver: Option<Waker>,
    /// The app side runs on the connection's own thread (an inline exchange, see
    /// [`EventSender::set_unbounded`]): it must never wait for room.
    unbounded: bool,
}

impl Link {
    /// Events queued past which the app side waits. With the connection's coalescing of
    /// queued events into one write, a generator's chunks go out in batches (stream workload,
    /// one core: one write per event 571 req/s; 8 events 1,367; 32: 1,773; 128 within the
    /// byte bound: 0.4 instead of 3.8 context switches per 1 MiB response).
    pub const EVENTS: usize = 128;
    /// Bytes queued past which the app side waits ...
    pub const BYTES: usize = 512 * 1024;
    /// ... until the connection has written down to this many.
    const RESUME: usize = Self::BYTES / 2;

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LinkState {
    fn has_room(&self, bytes: usize) -> bool {
        self.unbounded
            || self.events.len() < Link::EVENTS && (bytes == 0 || self.queued < Link::BYTES)
    }

    /// Wakes a waiting app thread once there is room again (bytes down to the resume mark).
    fn release_waiter(&mut self, room: &Condvar) {
        if self.waiting && self.queued <= Link::RESUME && self.events.len() < Link::EVENTS {
            self.waiting = false;
            room.notify_all();
        }
    }
}

/// Why an event was not sent.
#[derive(Debug)]
pub enum SendError {
    /// No room now: [`EventSender::send_blocking`] waits for it. The event is given back.
    Full(AppEvent),
    /// The connection is gone (the client left or the exchange was cut).
    Closed,
}

/// The app side of an exchange's link.
#[derive(Debug)]
pub struct EventSender(Arc<Link>);

impl EventSender {
    /// Queues `event`, which carries `bytes` of response body, if there is room.
    pub fn try_send(&self, event: AppEvent, bytes: usize) -> Result<(), SendError> {
        self.send(event, bytes, false)
    }

    /// Whether the connection side has closed the link (its exchange is cancelled).
    pub fn is_closed(&self) -> bool {
        self.0.lock().closed
    }

    /// Lifts the link's bounds for this exchange: the app side runs on the thread that would
    /// drain the link (inline, on the I/O thread), so waiting for room would wait forever.
    /// What it queues is bounded by what one call of the app makes; the caller checks
    /// [`EventSender::queued_bytes`] afterwards and stops running such a route inline.
    pub fn set_unbounded(&self) {
        self.0.lock().unbounded = true;
    }

    /// Response bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.0.lock().queued
    }

    /// Queues `event`, waiting (blocking the thread) for room. Fails if the connection is gone.
    pub fn send_blocking(&self, event: AppEvent, bytes: usize) -> Result<(), SendError> {
        self.send(event, bytes, true)
    }

    fn send(&self, event: AppEvent, bytes: usize, wait: bool) -> Result<(), SendError> {
        let mut state = self.0.lock();
        loop {
            if state.closed {
                return Err(SendError::Closed);
            }
            if state.has_room(bytes) {
                Self::push(state, event, bytes);
                return Ok(());
            }
            if !wait {
                return Err(SendError::Full(event));
            }
            state.waiting = true;
            state = self
                .0
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn push(mut state: MutexGuard<'_, LinkState>, event: AppEvent, bytes: usize) {
        state.events.push_back(event);
        state.queued += bytes;
        let receiver = state.receiver.take();
        drop(state);
        if let Some(waker) = receiver {
            waker.wake();
        }
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        EventSender(self.0.clone())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: the receiver learns that no more events will come.
            let receiver = self.0.lock().receiver.take();
            if let Some(waker) = receiver {
                waker.wake();
            }
        }
    }
}

/// The connection side of an exchange's link. Dropping it closes the link: the app side's
/// sends fail from then on, and a waiting app thread goes on.
#[derive(Debug)]
pub struct EventReceiver(Arc<Link>);

impl EventReceiver {
    /// Whether an event is waiting already (the app side ran during the dispatch: inline).
    pub fn has_events(&self) -> bool {
        !self.0.lock().events.is_empty()
    }

    /// The next event; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<AppEvent> {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            if let Some(event) = state.events.pop_front() {
                state.release_waiter(&self.0.room);
                return Poll::Ready(Some(event));
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(None);
            }
            match &state.receiver {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.receiver = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// A sender for another exchange over this link, if nothing else holds the link (every
    /// sender of the last exchange is gone): the link is reset and kept. A connection reuses
    /// its link this way, which saves the allocation of a new link and of its queue's buffer
    /// per request (two mallocs and frees, ~10 % of the allocator's work on hello).
    pub fn relink(&mut self) -> Option<EventSender> {
        let link = Arc::get_mut(&mut self.0)?;
        let state = link.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        // A fresh state that keeps the queue's buffer.
        let mut events = std::mem::take(&mut state.events);
        events.clear();
        *state = LinkState {
            events,
            ..LinkState::default()
        };
        *link.senders.get_mut() = 1;
        Some(EventSender(self.0.clone()))
    }

    /// Closes the link as dropping the receiver does (the app side's sends fail from now
    /// on, a waiting app thread goes on, what is queued is dropped), but keeps the receiver,
    /// whose [`EventReceiver::recv`] then tells when the app side has let go: an HTTP/2
    /// stream the client reset still counts against its connection until then.
    pub fn close(&mut self) {
        let events = {
            let mut state = self.0.lock();
            state.closed = true;
            // Only with a waiter: std's notify is a futex syscall even when nobody waits.
            if std::mem::take(&mut state.waiting) {
                self.0.room.notify_all();
            }
            std::mem::take(&mut state.events)
        };
        // Dropped outside the lock: they may hold the app's buffers.
        drop(events);
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<AppEvent> {
        let mut state = self.0.lock();
        let event = state.events.pop_front();
        state.release_waiter(&self.0.room);
        event
    }

    /// `bytes` of response body taken from events have been written.
    pub fn written(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut state = self.0.lock();
        state.queued = state.queued.saturating_sub(bytes);
        state.release_waiter(&self.0.room);
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

/// Responses answered during their dispatch (run inline), one busy spell of the I/O thread at
/// a time. The first of a spell is written at once; each later one waits for the other tasks
/// the loop has ready to run first (`yield_now`), so their responses go out together and the
/// client, a load generator or proxy on another core, is woken once per batch instead of once
/// per response (a cross-core wake-up, costly on a VM), as it is when app threads hand back a
/// batch. The first is not delayed: alone (one connection), a yield would only cost the loop
/// an extra turn. Measured, 1 worker on one core, wrk -c64, flask run inline: 116-137 µs of CPU
/// per request without the yield, 65-78 with it (on the app threads: 65-79), the difference
/// all in waking wrk; hello at 4 connections, yielding always: +5 %, hence the first-is-free
/// rule.
pub mod batch {
    use std::cell::Cell;

    thread_local! {
        static ANSWERED: Cell<u32> = const { Cell::new(0) };
    }

    /// Called by the runtime each time its I/O thread goes idle: a busy spell ended.
    pub fn idle() {
        ANSWERED.with(|n| n.set(0));
    }

    /// Counts an inline answer; whether to yield before writing it.
    pub fn answered_inline() -> bool {
        ANSWERED.with(|n| {
            let before = n.get();
            n.set(before.saturating_add(1));
            before > 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn data(bytes: usize) -> AppEvent {
        AppEvent::Send {
            head: None,
            body: Body::One(Bytes::from(vec![b'x'; bytes])),
            end: false,
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn past_the_byte_bound_a_sender_waits_until_the_connection_has_written() {
        let (tx, mut rx) = link();
        tx.try_send(data(Link::BYTES), Link::BYTES).expect("room");
        assert!(matches!(tx.try_send(data(1), 1), Err(SendError::Full(_))));
        // Events without body bytes (the end of a response, a body read) still go.
        tx.try_send(AppEvent::ReadBody, 0).expect("no bytes, room");
        let waiter = std::thread::spawn(move || tx.send_blocking(data(1), 1).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "sent past the byte bound");
        assert!(rx.try_recv().is_some());
        rx.written(Link::BYTES - Link::RESUME - 1);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "resumed above the resume mark");
        rx.written(1);
        assert!(waiter.join().expect("thread"), "the send failed");
        assert!(matches!(rx.try_recv(), Some(AppEvent::ReadBody)));
        assert!(matches!(rx.try_recv(), Some(AppEvent::Send { .. })));
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn an_unbounded_link_never_refuses_and_a_relinked_one_is_bounded_again() {
        let (tx, mut rx) = link();
        tx.set_unbounded();
        for _ in 0..Link::EVENTS * 2 {
            tx.try_send(data(1), 1)
                .expect("an inline exchange must never wait");
        }
        for _ in 0..2 {
            tx.try_send(data(Link::BYTES), Link::BYTES)
                .expect("past the byte bound too");
        }
        assert_eq!(tx.queued_bytes(), 2 * Link::EVENTS + 2 * Link::BYTES);
        drop(tx);
        let tx = rx.relink().expect("no sender left");
        tx.try_send(data(Link::BYTES), Link::BYTES).expect("room");
        assert!(matches!(tx.try_send(data(1), 1), Err(SendError::Full(_))));
    }

    #[test]
    fn a_body_holds_one_piece_without_a_vec_and_keeps_the_order_of_more() {
        let mut body = Body::default();
        assert!(body.is_empty());
        body.push(Bytes::from_static(b"ab"));
        assert!(matches!(&body, Body::One(piece) if piece == "ab"));
        body.push(Bytes::from_static(b"c"));
        body.push(Bytes::from_static(b"de"));
        assert_eq!(body.len(), 5);
        let joined: Vec<u8> = body.into_pieces().flat_map(|p| p.to_vec()).collect();
        assert_eq!(joined, b"abcde");
    }

    #[test]
    fn a_link_is_reused_only_once_every_sender_is_gone_and_starts_afresh() {
        let (tx, mut rx) = link();
        let input = tx.clone();
        tx.try_send(data(Link::BYTES), Link::BYTES).expect("room");
        drop(tx);
        assert!(
            rx.relink().is_none(),
            "reused while a sender (wsgi.input) lives"
        );
        drop(input);
        let tx = rx.relink().expect("every sender gone");
        // Nothing of the last exchange is left: no event, no bytes counted, open, one sender.
        assert!(rx.try_recv().is_none());
        tx.try_send(data(1), 1).expect("byte budget reset");
        assert!(matches!(rx.try_recv(), Some(AppEvent::Send { .. })));
        drop(tx);
        assert!(
            block_on(rx.recv()).is_none(),
            "the new sender was not counted"
        );
    }

    #[test]
    fn past_the_event_bound_a_sender_waits_until_events_are_taken() {
        let (tx, mut rx) = link();
        for _ in 0..Link::EVENTS {
            tx.try_send(AppEvent::ReadBody, 0).expect("room");
        }
        assert!(matches!(
            tx.try_send(AppEvent::ReadBody, 0),
            Err(SendError::Full(_))
        ));
        let waiter = std::thread::spawn(move || tx.send_blocking(AppEvent::Fail, 0).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "sent past the event bound");
        assert!(rx.try_recv().is_some());
        assert!(waiter.join().expect("thread"));
        let taken = std::iter::from_fn(|| rx.try_recv()).count();
        assert_eq!(taken, Link::EVENTS);
    }

    #[test]
    fn dropping_the_receiver_fails_sends_and_releases_a_waiting_sender() {
        let (tx, rx) = link();
        tx.try_send(data(Link::BYTES), Link::BYTES).expect("room");
        let tx2 = tx.clone();
        let waiter = std::thread::spawn(move || tx2.send_blocking(data(1), 1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(rx);
        assert!(matches!(
            waiter.join().expect("thread"),
            Err(SendError::Closed)
        ));
        assert!(matches!(
            tx.try_send(AppEvent::Fail, 0),
            Err(SendError::Closed)
        ));
    }

    #[test]
    fn recv_returns_queued_events_then_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = link();
        let tx2 = tx.clone();
        block_on(async move {
            tx.try_send(AppEvent::ReadBody, 0).expect("room");
            drop(tx);
            assert!(matches!(rx.recv().await, Some(AppEvent::ReadBody)));
            // One sender is left: recv waits for it, from another thread.
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                tx2.try_send(AppEvent::Fail, 0).expect("room");
                std::thread::sleep(Duration::from_millis(50));
                drop(tx2);
            });
            assert!(matches!(rx.recv().await, Some(AppEvent::Fail)));
            assert!(rx.recv().await.is_none());
            sender.join().expect("thread");
        });
    }
}
