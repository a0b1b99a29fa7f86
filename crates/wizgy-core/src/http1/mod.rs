//! The strict HTTP/1.1 engine: bytes in, parsed heads and body pieces out; no sockets here.
//!
//! Why not hyper: a WSGI server must refuse the request-smuggling shapes that hyper/httparse
//! accept (bare LF line ends, Content-Length with Transfer-Encoding, duplicate identical
//! Content-Length, `chunked` twice) and needs per-line size limits. Those decisions need the raw
//! head bytes, so wizgy tokenizes with httparse and owns the checks and the framing itself.

pub mod chunked;
pub mod connection;
pub mod date;
pub mod error;
pub mod head;
pub mod response;

pub use error::RequestError;
pub use head::{Framing, HeadParser, Limits, RequestHead, Version};
