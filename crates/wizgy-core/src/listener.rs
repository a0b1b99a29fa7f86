//! Listeners: parsing `--bind` addresses and binding them before anything else starts, so an
//! address in use is reported at once and workers can later inherit the sockets.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use socket2::{Domain, Socket, Type};
use thiserror::Error;

/// One `--bind` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// `HOST:PORT` or `[V6]:PORT`, kept as written for messages; resolved when bound.
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl BindAddress {
    /// Parses `HOST:PORT`, `[::1]:PORT`, `:PORT` (all interfaces) or `unix:PATH`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, e.g. unix:/run/wizgy.sock".into());
            }
            return Ok(BindAddress::Unix(PathBuf::from(path)));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT, [IPV6]:PORT or unix:PATH"))?;
        port.parse::<u16>()
            .map_err(|_| format!("{text:?}: port {port:?} is not a number from 0 to 65535"))?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        if host.starts_with('[') != host.ends_with(']') {
            return Err(format!(
                "{text:?}: unbalanced brackets around the IPv6 address"
            ));
        }
        Ok(BindAddress::Tcp(format!("{host}:{port}")))
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Tcp(addr) => f.write_str(addr),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound, listening socket (blocking std type; the worker converts it for tokio).
#[derive(Debug)]
pub enum Listener {
    Tcp(StdTcpListener),
    Unix(StdUnixListener, PathBuf),
}

/// Why a listener could not be bound.
#[derive(Debug, Error)]
pub enum BindError {
    #[error("cannot bind {addr}: address already in use")]
    InUse { addr: String },
    #[error("cannot bind {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("cannot resolve {addr}")]
    Resolve { addr: String },
}

impl Listener {
    /// Binds and listens. TCP sockets get SO_REUSEADDR (restarts do not wait for TIME_WAIT).
    pub fn bind(addr: &BindAddress, backlog: i32) -> Result<Listener, BindError> {
        let name = addr.to_string();
        let io_err = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                BindError::InUse { addr: name.clone() }
            } else {
                BindError::Io {
                    addr: name.clone(),
                    source,
                }
            }
        };
        match addr {
            BindAddress::Tcp(text) => {
                let socket_addr: SocketAddr = text
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| BindError::Resolve { addr: name.clone() })?;
                let socket = Socket::new(Domain::for_address(socket_addr), Type::STREAM, None)
                    .map_err(io_err)?;
                socket.set_reuse_address(true).map_err(io_err)?;
                if socket_addr.is_ipv6() {
                    socket.set_only_v6(true).map_err(io_err)?;
                }
                socket.bind(&socket_addr.into()).map_err(io_err)?;
                socket.listen(backlog).map_err(io_err)?;
                socket.set_nonblocking(true).map_err(io_err)?;
                Ok(Listener::Tcp(socket.into()))
            }
            BindAddress::Unix(path) => {
                // A stale socket file from a previous run would make bind fail; only remove
                // it if it is a socket nobody answers on.
                if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
                    use std::os::unix::fs::FileTypeExt;
                    if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io_err)?;
                let sock_addr = socket2::SockAddr::unix(path).map_err(io_err)?;
                socket.bind(&sock_addr).map_err(io_err)?;
                socket.listen(backlog).map_err(io_err)?;
                socket.set_nonblocking(true).map_err(io_err)?;
                Ok(Listener::Unix(socket.into(), path.clone()))
            }
        }
    }

    /// The URL this listener is reachable at, with the real port (`listening on` line).
    pub fn url(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(SocketAddr::V6(a)) => format!("http://[{}]:{}", a.ip(), a.port()),
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".into(),
            },
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_parse() {
        assert_eq!(
            BindAddress::parse("127.0.0.1:8000"),
            Ok(BindAddress::Tcp("127.0.0.1:8000".into()))
        );
        assert_eq!(
            BindAddress::parse("[::1]:0"),
            Ok(BindAddress::Tcp("[::1]:0".into()))
        );
        assert_eq!(
            BindAddress::parse(":80"),
            Ok(BindAddress::Tcp("0.0.0.0:80".into()))
        );
        assert_eq!(
            BindAddress::parse("unix:/tmp/x.sock"),
            Ok(BindAddress::Unix("/tmp/x.sock".into()))
        );
        for bad in ["nonsense", "host:port", "1.2.3.4:70000", "unix:", "[::1:80"] {
            assert!(BindAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
