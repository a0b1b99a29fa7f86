//! The contract between a connection (async, in the I/O thread) and the code that runs the app
//! (an app thread, in the binding crate): one [`Exchange`] per request, events back.
//!
//! The app side never touches the socket: it sends [`AppEvent`]s (response data, body reads)
//! and receives [`BodyPiece`]s. Channels are bounded, so a slow client slows the app down
//! (backpressure) instead of buffering without limit.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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
