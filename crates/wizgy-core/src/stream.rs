//! A client socket as every protocol driver sees it: TCP, unix, or TLS over TCP, with the
//! zero-copy sends (sendfile, `MSG_MORE`) that only a plaintext socket can do.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

/// A client socket: TCP, unix, or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Boxed: rustls' connection state is ~1 KiB, and a plaintext connection's task stays
    /// the size it was.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Sends up to `count` bytes of `file` from `offset` with sendfile(2): the kernel copies
    /// from the page cache to the socket, nothing passes through user space.
    pub async fn sendfile(&self, file: &File, offset: &mut i64, count: usize) -> io::Result<usize> {
        loop {
            let result = match self {
                Stream::Tcp(s) => {
                    s.writable().await?;
                    s.try_io(Interest::WRITABLE, || sendfile(s, file, offset, count))
                }
                Stream::Unix(s) => {
                    s.writable().await?;
                    s.try_io(Interest::WRITABLE, || sendfile(s, file, offset, count))
                }
                // Bytes sent past rustls would not be encrypted; see send_file_encrypted.
                Stream::Tls(_) => return Err(io::ErrorKind::Unsupported.into()),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return sent(other),
            }
        }
    }

    /// Sends some of `buf` with `MSG_MORE`: the kernel holds it back for the bytes of the next
    /// send (a file's head waits for its first bytes from sendfile, as nginx's `tcp_nopush`
    /// does with TCP_CORK), so a small response is one packet instead of two.
    pub async fn send_more(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let result = match self {
                Stream::Tcp(s) => {
                    s.writable().await?;
                    s.try_io(Interest::WRITABLE, || {
                        socket2::SockRef::from(s).send_with_flags(buf, libc::MSG_MORE)
                    })
                }
                Stream::Unix(s) => {
                    s.writable().await?;
                    s.try_io(Interest::WRITABLE, || {
                        socket2::SockRef::from(s).send_with_flags(buf, libc::MSG_MORE)
                    })
                }
                Stream::Tls(_) => return Err(io::ErrorKind::Unsupported.into()),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return sent(other),
            }
        }
    }

    /// Waits until a read will make progress. Over TLS, rustls may already hold decrypted
    /// bytes (a pipelined request that came in the same record) while the socket has nothing:
    /// then at once.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Tls(s) => {
                let (tcp, session) = s.get_ref();
                if !session.wants_read() {
                    return Ok(());
                }
                tcp.readable().await
            }
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

/// Counts the bytes of a write that succeeded (`wizgy_bytes_sent_total`).
fn sent(result: io::Result<usize>) -> io::Result<usize> {
    if let Ok(n) = result {
        crate::metrics::slot().bytes_sent.add(n as u64);
    }
    result
}

/// The same for a write polled.
fn sent_poll(poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    if let Poll::Ready(Ok(n)) = poll {
        crate::metrics::slot().bytes_sent.add(n as u64);
    }
    poll
}

fn sendfile(out: impl AsFd, file: &File, offset: &mut i64, count: usize) -> io::Result<usize> {
    nix::sys::sendfile::sendfile(out, file, Some(offset), count).map_err(io::Error::from)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        };
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            crate::metrics::slot().bytes_received.add(read as u64);
        }
        poll
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        sent_poll(match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        sent_poll(match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A stream whose first reads return bytes already read from it (the HTTP/2 preface that the
/// HTTP/1.1 reader took before it could tell what it was), then go on from the socket. The
/// HTTP/2 driver always reads through one (with nothing to replay after ALPN).
pub struct Rewind {
    replay: Bytes,
    inner: Stream,
}

impl Rewind {
    pub fn new(replay: Bytes, inner: Stream) -> Self {
        Rewind { replay, inner }
    }

    pub fn get_ref(&self) -> &Stream {
        &self.inner
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
