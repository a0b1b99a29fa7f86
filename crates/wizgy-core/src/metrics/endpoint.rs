//! `--metrics-bind`: the metrics and health endpoint, served by the supervisor from its one
//! poll loop (the supervisor forks, so it has no threads). A few non-blocking connections at a
//! time, each read until its request head is complete, answered once and closed; one that is
//! too slow, too large or one too many is closed. Bounded in connections, bytes and time.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use crate::listener::Listener;

/// Connections served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;
/// A request head larger than this is answered 431 and closed (scrapers send ~200 bytes).
const HEAD_LIMIT: usize = 8 * 1024;
/// A connection gets this long to send its head and read the answer.
const CLIENT_TIME: Duration = Duration::from_secs(5);

/// An answer: status, content type, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }
}

enum Socket {
    Tcp(std::net::TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
}

struct Client {
    socket: Socket,
    head: Vec<u8>,
    /// The answer, once there is one, and how much of it is written.
    out: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

enum Listening {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

/// The endpoint's listener and its connections.
pub struct Endpoint {
    listening: Listening,
    /// Where it listens, for the startup log.
    url: String,
    clients: Vec<Client>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.url)
    }
}

impl Endpoint {
    /// Serves on `listener` (bound by the caller as any --bind address is).
    pub fn new(listener: Listener) -> io::Result<Endpoint> {
        let url = listener.url(false);
        let listening = match listener {
            Listener::Tcp(l) | Listener::InheritedTcp(l) => {
                l.set_nonblocking(true)?;
                Listening::Tcp(l)
            }
            Listener::Unix(l, _) | Listener::Inherited(l, _) => {
                l.set_nonblocking(true)?;
                Listening::Unix(l)
            }
        };
        Ok(Endpoint {
            listening,
            url,
            clients: Vec::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The descriptors to poll: the listener (while there is room) and each connection.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut fds = Vec::with_capacity(self.clients.len() + 1);
        if self.clients.len() < MAX_CLIENTS {
            let fd = match &self.listening {
                Listening::Tcp(l) => l.as_fd(),
                Listening::Unix(l) => l.as_fd(),
            };
            fds.push((fd, false));
        }
        for client in &self.clients {
            fds.push((client.socket.as_fd(), client.out.is_some()));
        }
        fds
    }

    /// Accepts, reads and answers what it can without blocking. `answer(method, path)` makes
    /// the answer of a complete request.
    pub fn serve(&mut self, mut answer: impl FnMut(&str) -> Answer) {
        while self.clients.len() < MAX_CLIENTS {
            let accepted = match &self.listening {
                Listening::Tcp(l) => l
                    .accept()
                    .map(|(s, _)| s.set_nonblocking(true).map(|()| Socket::Tcp(s))),
                Listening::Unix(l) => l
                    .accept()
                    .map(|(s, _)| s.set_nonblocking(true).map(|()| Socket::Unix(s))),
            };
            match accepted {
                Ok(Ok(socket)) => self.clients.push(Client {
                    socket,
                    head: Vec::new(),
                    out: None,
                    deadline: Instant::now() + CLIENT_TIME,
                }),
                Ok(Err(_)) => {}
                Err(_) => break, // WouldBlock, or a failed accept: try again next tick
            }
        }
        let now = Instant::now();
        self.clients.retain_mut(|client| {
            if now >= client.deadline {
                return false;
            }
            if client.out.is_none() {
                match read_head(client) {
                    Progress::More => return true,
                    Progress::Closed => return false,
                    Progress::Head(request) => {
                        let reply = match request {
                            Ok((method, path)) => (answer(&path), method == "HEAD"),
                            Err(reply) => (reply, false),
                        };
                        client.out = Some((encode(&reply.0, reply.1), 0));
                    }
                }
            }
            let Some((out, sent)) = &mut client.out else {
                return true;
            };
            while *sent < out.len() {
                match client.socket.write(&out[*sent..]) {
                    Ok(0) => return false,
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            false // answered: close
        });
    }
}

enum Progress {
    More,
    Closed,
    /// `(method, path)`, or the answer to a request that cannot be served.
    Head(Result<(String, String), Answer>),
}

fn read_head(client: &mut Client) -> Progress {
    let mut buf = [0u8; 2048];
    loop {
        match client.socket.read(&mut buf) {
            Ok(0) => return Progress::Closed,
            Ok(n) => client.head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Progress::Closed,
        }
        if client.head.len() > HEAD_LIMIT {
            return Progress::Head(Err(Answer::text(431, "request head too large\n")));
        }
    }
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(&client.head) {
        Ok(httparse::Status::Partial) => Progress::More,
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or("GET").to_owned();
            let target = request.path.unwrap_or("/");
            let path = target.split('?').next().unwrap_or(target).to_owned();
            if method != "GET" && method != "HEAD" {
                return Progress::Head(Err(Answer::text(405, "GET or HEAD only\n")));
            }
            Progress::Head(Ok((method, path)))
        }
        Err(_) => Progress::Head(Err(Answer::text(400, "bad request\n"))),
    }
}

fn encode(answer: &Answer, head_only: bool) -> Vec<u8> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\nServer: wizgy\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(answer.body.as_bytes());
    }
    out
}
