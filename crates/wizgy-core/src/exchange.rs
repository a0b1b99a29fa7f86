//! The contract between a connection (async, in the I/O thread) and the code that runs the app
//! (an app thread, in the binding crate): one [`Exchange`] per request, events back.
//!
//! The app side never touches the socket: it sends [`AppEvent`]s (response data, body reads)
//! and receives [`BodyPiece`]s. Channels are bounded, so a slow client slows the app down
//! (backpressure) instead of buffering without limit.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

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
}

/// A request handed to the app side, with the channels of its exchange.
#[derive(Debug)]
pub struct Exchange {
    pub request: Request,
    /// Body bytes already read with the head (for a small Content-Length body, all of it).
    pub initial_body: Bytes,
    /// Events to the connection.
    pub events: mpsc::Sender<AppEvent>,
    /// Response bytes sent in events and not yet written by the connection.
    pub budget: Arc<SendBudget>,
    /// Body pieces from the connection, in answer to [`AppEvent::ReadBody`]; `None` when the
    /// whole body is in `initial_body` (no more may be asked for).
    pub body: Option<mpsc::Receiver<BodyPiece>>,
}

/// What the app side tells the connection.
#[derive(Debug)]
pub enum AppEvent {
    /// Response data. `head` is `Some` on the first event of a response; `end` marks the last.
    Send {
        head: Option<ResponseHead>,
        body: Vec<Bytes>,
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

/// The response bytes an exchange's app side may have handed to the connection and not yet
/// seen written: past [`SendBudget::LIMIT`], the app thread waits (backpressure by bytes; the
/// event channel bounds only the number of events).
///
/// Why bytes: the events are what a generator yields, so a count bounds nothing (32 events of
/// 64 KiB per exchange, 64 exchanges: 128 MiB), and a small count makes the app thread stop
/// and be woken every few chunks (stream workload: 32 events of 10 KiB cost 3.8 context
/// switches and 280 µs of CPU per 1 MiB response; batches of up to a budget, 0.4 and 218 µs).
#[derive(Debug, Default)]
pub struct SendBudget {
    state: Mutex<BudgetState>,
    room: Condvar,
}

#[derive(Debug, Default)]
struct BudgetState {
    queued: usize,
    waiting: bool,
    closed: bool,
}

impl SendBudget {
    /// Bytes queued past which the app side waits ...
    pub const LIMIT: usize = 512 * 1024;
    /// ... until the connection has written down to this many.
    const RESUME: usize = Self::LIMIT / 2;

    /// App side: counts `bytes` as queued unless that means waiting: `Some(false)` if the
    /// connection has gone (nothing counted), `None` if the budget is spent (call
    /// [`SendBudget::take`], which waits).
    pub fn try_take(&self, bytes: usize) -> Option<bool> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Self::count(&mut state, bytes)
    }

    /// App side: waits (blocking the thread) while the budget is spent, then counts `bytes`
    /// as queued. Returns false if the connection has gone (nothing was counted).
    pub fn take(&self, bytes: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(room) = Self::count(&mut state, bytes) {
                return room;
            }
            state.waiting = true;
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn count(state: &mut BudgetState, bytes: usize) -> Option<bool> {
        if state.closed {
            return Some(false);
        }
        if state.queued >= Self::LIMIT {
            return None;
        }
        state.queued += bytes;
        Some(true)
    }

    /// Connection side: `bytes` taken from events have been written.
    pub fn written(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.queued = state.queued.saturating_sub(bytes);
        if state.waiting && state.queued <= Self::RESUME {
            state.waiting = false;
            self.room.notify_all();
        }
    }

    /// Connection side: the exchange is over; a waiting app thread goes on (and finds the
    /// event channel closed).
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        // Only with a waiter: std's notify is a futex syscall even when nobody waits.
        if std::mem::take(&mut state.waiting) {
            self.room.notify_all();
        }
    }
}
