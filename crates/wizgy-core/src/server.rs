//! A worker's serving loop: a tokio runtime with one worker thread (the I/O thread), an accept
//! loop per listener, a task per connection, and a graceful stop on SIGTERM/SIGINT.
//!
//! The runtime is created here, after any fork, never in the supervisor. App threads are not
//! this module's business: it only sees the [`Dispatch`] it is given.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::{Config, HttpVersions, Networks};
use crate::exchange::{Dispatch, PeerAddr, ServerInfo};
use crate::files::StaticFiles;
use crate::http1::Limits;
use crate::http2::Http2Settings;
use crate::listener::Listener;
use crate::protocol::{self, ConnectionSettings};
use crate::recycle::RequestBudget;
use crate::stream::Stream;
use crate::supervisor::{message, WorkerLink};

/// Worker settings beyond the listeners and the dispatcher (all from the command line).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub limits: Limits,
    pub keep_alive_timeout: Duration,
    pub header_timeout: Duration,
    /// TCP_DEFER_ACCEPT on TCP listeners (zero: off); see [`crate::listener::set_defer_accept`].
    pub defer_accept: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    pub max_request_body: u64,
    /// Open connections per worker; past it, accepting pauses (the backlog holds the rest).
    pub max_connections: usize,
    pub forwarded_allow_ips: Networks,
    pub forwarded_for: bool,
    pub proxy_protocol: bool,
    pub proxy_allow_from: Networks,
    /// How long a graceful stop waits for exchanges in flight.
    pub graceful_timeout: Duration,
    /// A request running longer is answered 504 (if nothing was sent) and the worker recycled.
    pub request_timeout: Option<Duration>,
    /// Requests after which this worker asks to be recycled (0: never).
    pub max_requests: u64,
    /// The pipe to the supervisor, when running as a worker.
    pub link: Option<WorkerLink>,
    /// `--static` mounts, answered on the I/O thread.
    pub static_files: Arc<StaticFiles>,
    /// TLS for TCP listeners (`--certfile`), loaded by the caller: this worker's own read of
    /// the files (see [`crate::tls::TlsFiles::load`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--http`: the versions spoken.
    pub http: HttpVersions,
    pub http2: Http2Settings,
}

impl ServerOptions {
    pub fn from_config(config: &Config) -> Self {
        let limits = Limits {
            max_request_line: config.limit_request_line as usize,
            max_fields: config.limit_request_fields as usize,
            max_field_size: config.limit_request_field_size as usize,
        };
        ServerOptions {
            limits,
            keep_alive_timeout: config.keep_alive,
            header_timeout: config.header_timeout,
            defer_accept: config.defer_accept,
            body_timeout: config.body_timeout,
            write_timeout: config.write_timeout,
            max_request_body: config.max_request_body,
            max_connections: config.max_connections as usize,
            forwarded_allow_ips: config.forwarded_allow_ips.clone(),
            forwarded_for: config.forwarded_for,
            proxy_protocol: config.proxy_protocol,
            proxy_allow_from: config.proxy_allow_from.clone(),
            graceful_timeout: config.graceful_timeout,
            request_timeout: (!config.request_timeout.is_zero()).then_some(config.request_timeout),
            max_requests: config.max_requests,
            link: None,
            static_files: Arc::new(StaticFiles::new(&config.statics, config.static_max_age)),
            tls: None,
            http: config.http,
            http2: Http2Settings::from_config(config, &limits),
        }
    }
}

/// How often a worker tells the supervisor its event loop is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Raises this process's open-file limit to its hard limit: every connection is a descriptor,
/// and the usual soft limit (1024) would cap a worker far below `--max-connections`.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft}: {error}");
            }
        }
    }
}

/// Puts the calling thread, and the threads it starts afterwards, under `SCHED_BATCH` with
/// 1 µs timer slack. Called by each of a worker's threads (the I/O thread, the app threads
/// and their monitor), never by the thread that calls `wizgy.serve()`.
///
/// The I/O thread and the app threads hand work to each other all the time. Under the default
/// policy every hand-off preempts the thread that made it (wake-up preemption), so a loaded
/// worker switches threads about twice per request. Batch threads do not preempt on wake-up:
/// the woken thread runs when the current one blocks or its time slice ends, by which time it
/// has a batch of work waiting (measured with the pool of `app_threads`, hello on one core:
/// +14 % req/s). Linux only; a failure is harmless.
pub fn tune_worker_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // Processes the app starts inherit it (SCHED_RESET_ON_FORK resets only real-time
        // policies): harmless, they are only not preempting on wake-up either.
        let policy = libc::SCHED_BATCH;
        // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling
        // thread; SCHED_BATCH with priority 0 needs no privilege.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if rc != 0 {
            tracing::debug!(
                "SCHED_BATCH not available: {}",
                std::io::Error::last_os_error()
            );
        }
        // Timer slack 1 µs instead of Linux's default 50 µs: the app's sleeps and timeouts end
        // when asked (time.sleep(0.01) overshot by 183 µs here, 129 µs with this).
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer; it affects only this thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
        }
    }
}

/// Tunes glibc's malloc for a worker; each setting is skipped when its `MALLOC_*_`
/// environment variable is set, so an operator can still override it.
///
/// - Arenas capped at 2 (`MALLOC_ARENA_MAX`). Response data is allocated on app threads and
///   freed on the I/O thread; with glibc's default of up to 8 arenas per core, each thread
///   that allocates gets an arena of its own, and freed memory stays spread over them.
///   Measured on the stream workload (64 clients, 100 x 10 KiB generator chunks): worker RSS
///   32 -> 23 MiB at the same req/s; hello unchanged. The advice gunicorn gives for threads.
/// - 4 MiB kept at the top of the heap when trimming (`MALLOC_TOP_PAD_`): request bodies are
///   64 KiB buffers allocated and freed per request, and the default trim gave the pages back
///   and faulted them in again each time (post workload: 1.0 -> 0 page faults per request,
///   ~33 -> ~27 µs of CPU per request; peak RSS unchanged within 0.3 MiB).
/// - Blocks from 4 MiB up mapped on their own (`MALLOC_MMAP_THRESHOLD_`): setting the pad
///   turns off glibc's sliding mmap threshold, and a fixed 128 KiB one maps and faults in
///   every 1 MiB response body an app builds (measured: 65 -> 130 faults, 437 -> 749 µs per
///   request); 4 MiB keeps such bodies on the heap as the sliding threshold did.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        let settings = [
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
            ("MALLOC_TOP_PAD_", libc::M_TOP_PAD, 4 << 20),
            ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 4 << 20),
        ];
        for (variable, parameter, value) in settings {
            if unset(variable) {
                // SAFETY: mallopt only changes allocator settings; these take any int.
                #[allow(unsafe_code)]
                unsafe {
                    libc::mallopt(parameter, value);
                }
            }
        }
    }
}

/// How long the runtime gets to drop its tasks once the server loop has ended (connections
/// still in flight after the graceful timeout are cut then).
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(100);

/// How long a stopping worker waits for its last access-log lines to be written.
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(1);

/// How long app threads get to finish after the server loop has ended (the graceful timeout
/// was already spent waiting for their exchanges; an exchange whose connection was just cut
/// still has its iterable's `close()` called).
pub const APP_THREAD_GRACE: Duration = Duration::from_secs(1);

/// A worker's whole wind-down after its graceful timeout: the supervisor kills a stopping
/// worker only once this much more has passed (plus a margin; see the supervisor).
pub const WIND_DOWN: Duration = RUNTIME_SHUTDOWN.saturating_add(APP_THREAD_GRACE);

/// Serves `listeners` until SIGTERM or SIGINT, then stops gracefully: no new connections,
/// exchanges in flight finish, idle keep-alive connections close.
pub fn run(
    listeners: Vec<Listener>,
    dispatcher: Arc<dyn Dispatch>,
    options: ServerOptions,
) -> io::Result<()> {
    // One I/O thread, but the multi-thread scheduler: the current-thread one wakes its driver
    // (an eventfd write) on every wake from an app thread, even while it is running; this one
    // only when its worker is parked (hello: 3.1 -> 2.2 syscalls, -5 % CPU per request).
    // After any fork: the writer thread is this worker's own.
    crate::logging::start_access_writer();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wizgy-io")
        .on_thread_start(tune_worker_thread)
        .on_thread_park(crate::exchange::batch::idle)
        .enable_all()
        .build()?;
    let settings = Arc::new(ConnectionSettings {
        dispatcher,
        limits: options.limits,
        keep_alive_timeout: options.keep_alive_timeout,
        header_timeout: options.header_timeout,
        body_timeout: options.body_timeout,
        write_timeout: options.write_timeout,
        max_request_body: options.max_request_body,
        forwarded_allow_ips: options.forwarded_allow_ips.clone(),
        forwarded_for: options.forwarded_for,
        proxy_protocol: options.proxy_protocol,
        proxy_allow_from: options.proxy_allow_from.clone(),
        request_timeout: options.request_timeout,
        // Called before READY is sent: the link's age is this worker's boot time.
        budget: RequestBudget::new(
            options.max_requests,
            options.link.clone(),
            options
                .link
                .as_ref()
                .map(WorkerLink::age)
                .unwrap_or_default(),
        ),
        static_files: options.static_files.clone(),
        tls: options.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        http: options.http,
        http2: options.http2,
    });
    // One budget of connections shared by all listeners of the worker.
    let capacity = Arc::new(Semaphore::new(options.max_connections));
    let link = options.link.clone();
    let result = runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut reopen = signal(SignalKind::user_defined1())?;
        // Reloads are the supervisor's business: a worker ignores a stray SIGHUP (the default
        // action would kill it).
        let mut hangup = signal(SignalKind::hangup())?;
        // SIGUSR2 from the supervisor: accept again after pausing at --max-requests.
        let mut resume = signal(SignalKind::user_defined2())?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // Every connection holds a clone; recv() returns None once they have all ended.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        for listener in listeners {
            let accept = accept_loop(
                listener,
                settings.clone(),
                capacity.clone(),
                shutdown_rx.clone(),
                alive_tx.clone(),
                options.defer_accept,
            )?;
            tokio::spawn(accept);
        }
        drop(alive_tx);
        if let Some(link) = link {
            // Ready once every accept loop runs; then a heartbeat proves the loop is alive.
            link.send(message::READY);
            tokio::spawn(async move {
                let mut beat = tokio::time::interval(HEARTBEAT);
                loop {
                    beat.tick().await;
                    link.send(message::HEARTBEAT);
                }
            });
        }
        loop {
            tokio::select! {
                _ = terminate.recv() => {
                    tracing::debug!("SIGTERM: worker stopping gracefully");
                    break;
                }
                _ = interrupt.recv() => {
                    tracing::debug!("SIGINT: worker stopping gracefully");
                    break;
                }
                _ = reopen.recv() => crate::logging::reopen(),
                _ = hangup.recv() => {}
                _ = resume.recv() => settings.budget.resume(),
            }
        }
        let _ = shutdown_tx.send(true);
        if tokio::time::timeout(options.graceful_timeout, alive_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("graceful timeout: closing connections still in flight");
        }
        io::Result::Ok(())
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    crate::logging::flush_access_log(ACCESS_LOG_FLUSH);
    result
}

/// Builds the accept loop of one listener (converting it to tokio inside the runtime).
fn accept_loop(
    listener: Listener,
    settings: Arc<ConnectionSettings>,
    capacity: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    defer_accept: Duration,
) -> io::Result<impl std::future::Future<Output = ()>> {
    enum Accepting {
        Tcp(TcpListener),
        Unix(UnixListener),
    }
    let inherited = listener.is_inherited();
    let (accepting, server) = match listener {
        Listener::Tcp(l) | Listener::InheritedTcp(l) => {
            let addr = l.local_addr()?;
            let info = ServerInfo {
                name: addr.ip().to_string(),
                port: addr.port().to_string(),
                // Every TCP listener speaks TLS when there is a certificate.
                scheme: if settings.tls.is_some() {
                    "https"
                } else {
                    "http"
                },
            };
            (Accepting::Tcp(TcpListener::from_std(l)?), info)
        }
        Listener::Unix(l, _) | Listener::Inherited(l, _) => {
            let info = ServerInfo {
                name: "localhost".into(),
                port: String::new(),
                scheme: "http",
            };
            (Accepting::Unix(UnixListener::from_std(l)?), info)
        }
    };
    // Linux gives accepted sockets the listener's TCP_NODELAY: set once here, not with a
    // setsockopt per connection (close workload: one system call fewer per request).
    let nodelay_inherited = cfg!(target_os = "linux")
        && match &accepting {
            Accepting::Tcp(l) => socket2::SockRef::from(l).set_tcp_nodelay(true).is_ok(),
            Accepting::Unix(_) => false,
        };
    if let Accepting::Tcp(l) = &accepting {
        if let Err(e) = crate::listener::set_defer_accept(l, defer_accept) {
            tracing::debug!("TCP_DEFER_ACCEPT not set: {e}");
        }
    }
    let server = Arc::new(server);
    Ok(async move {
        // Made once: a watch's changed() joins and leaves the channel's waiter list each time
        // it is created and dropped (twice per accepted connection).
        let mut stop_watch = shutdown.clone();
        let stopping = stop_watch.changed();
        tokio::pin!(stopping);
        // Accepting pauses at --max-requests (see crate::recycle). Watched by a future made
        // once, and again only when it fires.
        let mut pause = Box::pin(next_change(settings.budget.accepting()));
        // A spare (see crate::recycle) starts paused, which is not a change: wait here.
        let mut initial = settings.budget.accepting();
        while !*initial.borrow_and_update() {
            tokio::select! {
                changed = initial.changed() => if changed.is_err() { return },
                _ = &mut stopping => return,
            }
        }
        'serve: loop {
            // At --max-connections, stop accepting: new clients wait in the listen backlog
            // (not refused) until a connection ends and returns its permit.
            let permit = tokio::select! {
                permit = capacity.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = &mut stopping => break,
            };
            let accepted = tokio::select! {
                accepted = async {
                    match &accepting {
                        Accepting::Tcp(l) => l.accept().await.map(|(s, addr)| {
                            if !nodelay_inherited {
                                let _ = s.set_nodelay(true);
                            }
                            (Stream::Tcp(s), PeerAddr::Ip(addr))
                        }),
                        Accepting::Unix(l) => l.accept().await.map(|(s, _)| (Stream::Unix(s), PeerAddr::Unix)),
                    }
                } => accepted,
                _ = &mut stopping => break,
                mut watch = &mut pause => {
                    while !*watch.borrow_and_update() {
                        tokio::select! {
                            changed = watch.changed() => if changed.is_err() { break 'serve },
                            _ = &mut stopping => break 'serve,
                        }
                    }
                    pause = Box::pin(next_change(watch));
                    continue;
                }
            };
            match accepted {
                Ok((stream, peer)) => {
                    // The permit and the liveness token go into the connection's own future
                    // (dropped when it ends): wrapping it in `async { task.await; drop(..) }`
                    // stored it twice in the task (4.5 KiB per connection instead of 2.3).
                    tokio::spawn(protocol::serve(
                        stream,
                        peer,
                        server.clone(),
                        settings.clone(),
                        shutdown.clone(),
                        (permit, alive.clone()),
                    ));
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning on a failing accept.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if !*shutdown.borrow() || inherited {
            // Not a stop (the runtime is going away); or a socket whose owner keeps it open:
            // what is queued there is for the next instance.
            return;
        }
        // Stopping: this handle closes when the loop ends, and once every process has closed
        // its handles the kernel refuses new connections. Those already queued in the backlog
        // are taken first and served (with `Connection: close`), or closed at once when no
        // connection permit is left, rather than left queued in a socket nobody accepts on.
        let swept = match accepting {
            Accepting::Tcp(l) => l.into_std().map(Swept::Tcp),
            Accepting::Unix(l) => l.into_std().map(Swept::Unix),
        };
        let Ok(swept) = swept else { return };
        for _ in 0..SWEEP_LIMIT {
            let (stream, peer) = match swept.accept() {
                Ok(accepted) => accepted,
                Err(_) => break, // WouldBlock: the backlog is empty
            };
            let Ok(permit) = capacity.clone().try_acquire_owned() else {
                break; // dropping the stream closes it
            };
            tokio::spawn(protocol::serve(
                stream,
                peer,
                server.clone(),
                settings.clone(),
                shutdown.clone(),
                (permit, alive.clone()),
            ));
        }
    })
}

/// At most this many queued connections are taken from a listener as it closes; a bound for
/// a backlog that refills as fast as it is emptied.
const SWEEP_LIMIT: usize = 4096;

/// A listener handed back from tokio for a last non-blocking sweep of its backlog.
enum Swept {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Swept {
    /// One queued connection, registered with the runtime; `WouldBlock` when none is left.
    fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Swept::Tcp(l) => {
                let (s, addr) = l.accept()?;
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
                Ok((
                    Stream::Tcp(tokio::net::TcpStream::from_std(s)?),
                    PeerAddr::Ip(addr),
                ))
            }
            Swept::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(true)?;
                Ok((
                    Stream::Unix(tokio::net::UnixStream::from_std(s)?),
                    PeerAddr::Unix,
                ))
            }
        }
    }
}

/// Resolves with the receiver once the watched value changes (never, if the sender is gone).
async fn next_change(mut watch: watch::Receiver<bool>) -> watch::Receiver<bool> {
    if watch.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    watch
}

/// Sets the process's file mode creation mask (`--umask`).
pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}
