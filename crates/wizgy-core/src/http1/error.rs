//! Request errors: a small, non-allocating enum; each knows the status a client should see.

use thiserror::Error;

/// Why a request was refused. The connection answers with [`RequestError::status`] and
/// `Connection: close`, then closes; the app is never called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Malformed or ambiguous syntax or framing (the reason is for the debug log only).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request line is longer than `--limit-request-line`.
    #[error("request line too long")]
    UriTooLong,
    /// Too many header fields, or one field is too long.
    #[error("request header fields too large: {0}")]
    HeaderFieldsTooLarge(&'static str),
    /// The body is larger than `--max-request-body`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A Transfer-Encoding other than `chunked` (RFC 9112 §6.1: a server that receives a
    /// transfer coding it does not understand responds 501).
    #[error("transfer coding not implemented")]
    NotImplemented,
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1).
    #[error("expectation failed")]
    ExpectationFailed,
    /// A well-formed HTTP version wizgy does not speak on this connection (e.g. `HTTP/2.0`).
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// The head did not arrive in time.
    #[error("request timeout")]
    Timeout,
}

impl RequestError {
    /// The status code and reason phrase of the response this error produces.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RequestError::BadRequest(_) => (400, "Bad Request"),
            RequestError::UriTooLong => (414, "URI Too Long"),
            RequestError::HeaderFieldsTooLarge(_) => (431, "Request Header Fields Too Large"),
            RequestError::PayloadTooLarge => (413, "Content Too Large"),
            RequestError::NotImplemented => (501, "Not Implemented"),
            RequestError::ExpectationFailed => (417, "Expectation Failed"),
            RequestError::VersionNotSupported => (505, "HTTP Version Not Supported"),
            RequestError::Timeout => (408, "Request Timeout"),
        }
    }
}
