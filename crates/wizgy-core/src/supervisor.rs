//! The supervisor: the parent process that forks workers, watches them and replaces them.
//!
//! Rule 1: no threads and no runtime here. Signals are blocked and read from a signalfd in one
//! poll loop with the workers' pipes, so every event is handled in one place, in order, and a
//! fork never happens while another thread holds a lock.
//! Rule 2: capacity never drops to zero on purpose, and a limit is a limit. A worker retired
//! for a count or a deadline (max-requests, memory, lifetime, request timeout) is asked to
//! drain at once when another worker can take new connections; only the last one able to
//! accept keeps serving until a replacement is ready. Successors are started ahead of the
//! limits that can be foreseen (max-requests at the worker's rate, lifetime), so that case is
//! short. A reload keeps the old workers until all the new ones are ready.
//!
//! Forking itself is the host's (the binding crate's), so the interpreter's fork hooks run.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use thiserror::Error;

use crate::metrics::endpoint::{Answer, Endpoint};
use crate::metrics::{exposition, Region, Values};

/// Exit status of a worker whose app could not be loaded (or, on a reload, whose TLS
/// certificate could not: both are fixed by the operator, not by respawning).
pub const EXIT_APP_LOAD_FAILED: i32 = 3;

/// Messages a worker writes on its pipe, one byte each.
pub mod message {
    /// The worker accepts connections.
    pub const READY: u8 = b'R';
    /// The worker's event loop is alive.
    pub const HEARTBEAT: u8 = b'H';
    /// The worker reached --max-requests and stopped accepting: replace it (and answer
    /// SIGUSR2, "accept again", if no other worker can take new connections).
    pub const MAX_REQUESTS: u8 = b'M';
    /// The worker will reach --max-requests soon, at its current rate: start its successor.
    pub const SOON: u8 = b'S';
    /// A request ran past --request-timeout: replace the worker.
    pub const REQUEST_TIMEOUT: u8 = b'T';
}

/// The worker's end of its pipe to the supervisor.
#[derive(Debug, Clone)]
pub struct WorkerLink {
    fd: std::sync::Arc<OwnedFd>,
    /// When the worker was forked.
    born: Instant,
    /// A spare: it boots and reports READY but does not accept until SIGUSR2.
    standby: bool,
}

impl WorkerLink {
    /// A link over the write end of a pipe (the supervisor makes it at fork).
    pub fn new(fd: OwnedFd) -> Self {
        WorkerLink {
            fd: std::sync::Arc::new(fd),
            born: Instant::now(),
            standby: false,
        }
    }

    /// The same link for a spare worker (see [`WorkerLink::is_standby`]).
    pub fn standby(mut self) -> Self {
        self.standby = true;
        self
    }

    /// Whether this worker starts as a spare: loaded and ready, its accept loops paused until
    /// the supervisor's SIGUSR2 promotes it into the place of a worker at its limit.
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Time since the worker was forked: at READY, how long it took to boot.
    pub fn age(&self) -> Duration {
        self.born.elapsed()
    }

    /// Tells the supervisor something; a full or broken pipe loses the byte, never blocks.
    pub fn send(&self, message: u8) {
        let _ = nix::unistd::write(self.fd.as_fd(), &[message]);
    }
}

/// What the supervisor needs from the binding crate.
pub trait WorkerHost {
    /// fork(2) with the interpreter's hooks around it: `Some(pid)` in the parent, `None` in
    /// the child.
    fn fork(&mut self) -> io::Result<Option<Pid>>;
    /// Runs a worker in the freshly forked child; returns its exit status.
    fn run_worker(&mut self, link: WorkerLink) -> i32;
    /// Closes the listening sockets wizgy bound (a stop: new connections are refused from now
    /// on); inherited ones (fd://, systemd) stay open.
    fn close_listeners(&mut self);
}

/// Supervisor settings, from the command line.
#[derive(Debug)]
pub struct SupervisorOptions {
    pub workers: usize,
    /// Liveness: no heartbeat for this long kills a worker (`None`: never).
    pub timeout: Option<Duration>,
    pub graceful_timeout: Duration,
    pub shutdown_delay: Duration,
    pub max_worker_memory: Option<u64>,
    pub max_worker_lifetime: Option<Duration>,
    /// `--reload`: directories to watch for changed `.py` files.
    pub reload_dirs: Option<Vec<PathBuf>>,
    /// Logged once the first worker is ready (`listening on ...`), so that an app that cannot
    /// load fails with its one error line and nothing that suggests it is being served.
    pub announce: Vec<String>,
    /// `--metrics-bind`: `/metrics`, `/healthz` and `/readyz`, served from the poll loop.
    pub metrics: Option<Endpoint>,
}

/// Why the supervisor gave up.
#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error("the app could not be loaded (see the message above)")]
    AppLoadFailed,
    #[error("supervisor failed: {0}")]
    Io(#[from] io::Error),
}

impl From<Errno> for SupervisorError {
    fn from(errno: Errno) -> Self {
        SupervisorError::Io(errno.into())
    }
}

/// Why a worker is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retire {
    Reload,
    MaxRequests,
    Memory,
    Lifetime,
    RequestTimeout,
    Excess,
}

impl Retire {
    fn reason(self) -> &'static str {
        match self {
            Retire::Reload => "reload",
            Retire::MaxRequests => "max-requests",
            Retire::Memory => "max-worker-memory",
            Retire::Lifetime => "max-worker-lifetime",
            Retire::RequestTimeout => "request-timeout",
            Retire::Excess => "fewer workers wanted (SIGTTOU)",
        }
    }

    /// Its `wizgy_worker_restarts_total` reason (`None`: not a replacement).
    fn label(self) -> Option<&'static str> {
        Some(match self {
            Retire::Reload => "reload",
            Retire::MaxRequests => "max-requests",
            Retire::Memory => "memory",
            Retire::Lifetime => "lifetime",
            Retire::RequestTimeout => "request-timeout",
            Retire::Excess => return None,
        })
    }
}

#[derive(Debug)]
struct Worker {
    pid: Pid,
    pipe: OwnedFd,
    started: Instant,
    last_beat: Instant,
    ready: bool,
    /// How long it took from fork to READY.
    boot: Option<Duration>,
    /// To be replaced: keeps serving until enough replacements are ready.
    retiring: Option<Retire>,
    /// It will retire soon (near --max-requests or --max-worker-lifetime): a spare is started
    /// now to take its place when it does.
    successor_asked: bool,
    /// It reached --max-requests and paused accepting (see [`crate::recycle`]).
    paused: bool,
    /// When it paused (the `M` message).
    paused_at: Option<Instant>,
    /// SIGUSR2 was sent: it accepts again, being the last worker that can.
    resumed: bool,
    /// A spare: ready but not accepting until promoted (SIGUSR2) into a free place. It does
    /// not count towards `target` until then.
    standby: bool,
    /// Asked to stop (SIGTERM sent) at this instant.
    stopping: Option<Instant>,
    /// Its slot of the metrics region (with --metrics-bind).
    slot: Option<usize>,
}

/// Why workers are replaced, the label values of `wizgy_worker_restarts_total`.
pub const RESTART_REASONS: [&str; 7] = [
    "crash",
    "max-requests",
    "memory",
    "lifetime",
    "timeout",
    "request-timeout",
    "reload",
];

/// `--metrics-bind`'s state: the endpoint, the slots workers count into, and what the workers
/// that are gone counted (so that no counter goes backwards when one ends).
struct Metrics {
    endpoint: Endpoint,
    region: Region,
    /// Which slots live workers hold.
    used: Vec<bool>,
    /// The counts of workers that have ended.
    retired: Values,
    /// Workers replaced, by [`RESTART_REASONS`].
    restarts: [u64; RESTART_REASONS.len()],
}

impl Metrics {
    fn new(endpoint: Endpoint, workers: usize) -> io::Result<Metrics> {
        // Room for every worker, its replacement and spares, and SIGTTIN growth.
        let slots = workers.saturating_mul(4).saturating_add(16).min(4096 + 16);
        Ok(Metrics {
            endpoint,
            region: Region::map(slots)?,
            used: vec![false; slots],
            retired: Values::default(),
            restarts: [0; RESTART_REASONS.len()],
        })
    }

    /// A free slot, zeroed, for a worker about to be forked.
    fn take_slot(&mut self) -> Option<usize> {
        let Some(index) = self.used.iter().position(|used| !used) else {
            tracing::warn!("no metrics slot left for a new worker: its counts are not served");
            return None;
        };
        self.used[index] = true;
        self.region.clear(index);
        Some(index)
    }

    /// A worker has ended (it writes no more): its counts join the retired ones.
    fn release(&mut self, slot: Option<usize>) {
        if let Some(index) = slot {
            let values = self.region.read(index);
            self.retired.add(&values, false);
            self.used[index] = false;
        }
    }

    fn restarted(&mut self, reason: &str) {
        if let Some(i) = RESTART_REASONS.iter().position(|r| *r == reason) {
            self.restarts[i] += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM/SIGINT received; stop once the shutdown delay has passed.
    StopAt(Instant),
    /// Workers were asked to stop; exit when they are gone (or killed at the deadline).
    Stopping,
}

/// How long past `--graceful-timeout` a stopping worker has before it is killed: its own
/// wind-down ([`crate::server::WIND_DOWN`]: it cuts the connections still in flight and gives
/// its app threads time to end, so an app's iterable still gets its `close()`) and a margin
/// for its exit. Killing it at the timeout itself raced with that (seen: `close()` of a cut
/// stream not called, 2 runs in 6).
const WIND_DOWN: Duration = crate::server::WIND_DOWN.saturating_add(Duration::from_millis(400));

const TICK: Duration = Duration::from_millis(200);
/// How long the last worker able to accept stays paused at --max-requests while its
/// replacement boots, before it accepts again. The wait costs queued clients at most this much
/// once per recycle, and only when traffic outruns a boot: a worker's whole life at the limit is
/// shorter than its successor's boot (CI: 2 workers, 50 requests each at ~1 request/ms, boots of
/// 50-150 ms under load: 59 of 50 served by the worker that resumed at once).
const LAST_ACCEPTOR_WAIT: Duration = Duration::from_millis(100);
/// The poll timeout while such a worker waits.
const WAIT_TICK: Duration = Duration::from_millis(5);
/// A worker that dies before it is ready is respawned no faster than this.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the supervisor until a graceful or immediate stop completes.
pub fn supervise(
    host: &mut dyn WorkerHost,
    options: SupervisorOptions,
) -> Result<(), SupervisorError> {
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGUSR1,
    ] {
        signals.add(signal);
    }
    let mut original_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&signals),
        Some(&mut original_mask),
    )?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let mut options = options;
    let metrics = match options.metrics.take() {
        Some(endpoint) => {
            tracing::info!("metrics and health on {}", endpoint.url());
            Some(Metrics::new(endpoint, options.workers)?)
        }
        None => None,
    };
    let watcher = match &options.reload_dirs {
        Some(dirs) => Some(crate::reload::Watcher::new(dirs)?),
        None => None,
    };
    let mut supervisor = Supervisor {
        target: options.workers.max(1),
        options,
        workers: Vec::new(),
        phase: Phase::Running,
        ever_ready: false,
        respawn_after: None,
        reload_failed: false,
        reloading: false,
        original_mask,
        signal_fd: Some(signal_fd),
        watcher,
        metrics,
    };
    let result = supervisor.run(host);
    // Whatever happened, no worker outlives the supervisor.
    for worker in &supervisor.workers {
        let _ = kill(worker.pid, Signal::SIGKILL);
    }
    for worker in &supervisor.workers {
        let _ = waitpid(worker.pid, None);
    }
    result
}

struct Supervisor {
    options: SupervisorOptions,
    target: usize,
    workers: Vec<Worker>,
    phase: Phase,
    /// Some worker has been ready once: boot failures after this are not fatal.
    ever_ready: bool,
    respawn_after: Option<Instant>,
    /// The last replacement failed to load the app: wait for the next reload before trying.
    reload_failed: bool,
    /// A reload is under way; "reload complete" is logged when its old workers are gone.
    reloading: bool,
    original_mask: SigSet,
    signal_fd: Option<SignalFd>,
    watcher: Option<crate::reload::Watcher>,
    metrics: Option<Metrics>,
}

impl Supervisor {
    fn run(&mut self, host: &mut dyn WorkerHost) -> Result<(), SupervisorError> {
        self.spawn(host, false)?;
        loop {
            self.wait_for_events(host)?;
            self.check_workers();
            match self.phase {
                Phase::StopAt(at) if Instant::now() >= at => self.begin_stop(host),
                Phase::Stopping => {
                    if self.workers.is_empty() {
                        tracing::info!("stopped");
                        return Ok(());
                    }
                    continue;
                }
                _ => {}
            }
            if !self.ever_ready && self.workers.is_empty() && self.respawn_after.is_none() {
                if self.watcher.is_some() {
                    // --reload: wait for the code to be fixed.
                    continue;
                }
                return Err(SupervisorError::AppLoadFailed);
            }
            self.maintain(host)?;
        }
    }

    /// Polls the signalfd, the workers' pipes and the reload watcher for one tick.
    fn wait_for_events(&mut self, host: &mut dyn WorkerHost) -> Result<(), SupervisorError> {
        let signal_fd = self
            .signal_fd
            .as_ref()
            .expect("the supervisor keeps its signalfd");
        let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            self.workers
                .iter()
                .map(|w| PollFd::new(w.pipe.as_fd(), PollFlags::POLLIN)),
        );
        if let Some(watcher) = &self.watcher {
            fds.push(PollFd::new(watcher.as_fd(), PollFlags::POLLIN));
        }
        let endpoint_fds = self
            .metrics
            .as_ref()
            .map(|m| m.endpoint.poll_fds())
            .unwrap_or_default();
        for (fd, writing) in &endpoint_fds {
            let flags = if *writing {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(*fd, flags));
        }
        let waiting = self
            .workers
            .iter()
            .any(|w| w.paused && !w.resumed && w.stopping.is_none());
        let tick = if waiting { WAIT_TICK } else { TICK };
        let timeout = PollTimeout::try_from(tick).expect("a 200 ms tick fits");
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(fds);
        drop(endpoint_fds);
        self.serve_metrics();
        self.read_signals(host)?;
        self.read_pipes();
        if self.watcher.as_mut().is_some_and(|w| w.changed()) {
            tracing::info!("code changed: reloading");
            self.reload();
        }
        Ok(())
    }

    fn read_signals(&mut self, host: &mut dyn WorkerHost) -> Result<(), SupervisorError> {
        loop {
            let signal_fd = self
                .signal_fd
                .as_mut()
                .expect("the supervisor keeps its signalfd");
            let info = match signal_fd.read_signal() {
                Ok(Some(info)) => info,
                Ok(None) | Err(Errno::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match signal {
                Signal::SIGCHLD => self.reap(),
                Signal::SIGTERM | Signal::SIGINT if self.phase == Phase::Running => {
                    tracing::info!("{}: stopping gracefully", signal.as_str());
                    self.phase = Phase::StopAt(Instant::now() + self.options.shutdown_delay);
                }
                Signal::SIGQUIT => {
                    tracing::info!("SIGQUIT: stopping now");
                    host.close_listeners();
                    for worker in &self.workers {
                        let _ = kill(worker.pid, Signal::SIGKILL);
                    }
                    self.phase = Phase::Stopping;
                }
                Signal::SIGHUP => {
                    tracing::info!("SIGHUP: reloading");
                    self.reload();
                }
                Signal::SIGTTIN => {
                    self.target += 1;
                    tracing::info!("SIGTTIN: {} workers", self.target);
                    self.maintain(host)?;
                }
                Signal::SIGTTOU => {
                    self.target = self.target.saturating_sub(1).max(1);
                    tracing::info!("SIGTTOU: {} workers", self.target);
                }
                Signal::SIGUSR1 => {
                    tracing::info!("SIGUSR1: reopening log files");
                    crate::logging::reopen();
                    for worker in &self.workers {
                        let _ = kill(worker.pid, Signal::SIGUSR1);
                    }
                }
                _ => {}
            }
        }
    }

    /// Marks every current worker for replacement (SIGHUP, --reload).
    fn reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.reload_failed = false;
        self.reloading = true;
        self.respawn_after = None;
        for worker in self.workers.iter_mut().filter(|w| w.stopping.is_none()) {
            worker.retiring.get_or_insert(Retire::Reload);
        }
    }

    fn read_pipes(&mut self) {
        let mut buf = [0u8; 64];
        for worker in &mut self.workers {
            loop {
                let n = match nix::unistd::read(&worker.pipe, &mut buf) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                for &byte in &buf[..n] {
                    match byte {
                        message::READY if !worker.ready => {
                            worker.ready = true;
                            worker.last_beat = Instant::now();
                            worker.boot = Some(worker.started.elapsed());
                            for line in self.options.announce.drain(..) {
                                tracing::info!("{line}");
                            }
                            if worker.standby {
                                tracing::info!("worker {} booted (spare)", worker.pid);
                            } else {
                                tracing::info!("worker {} booted", worker.pid);
                            }
                        }
                        message::HEARTBEAT => worker.last_beat = Instant::now(),
                        message::MAX_REQUESTS => {
                            worker.paused = true;
                            worker.paused_at = Some(Instant::now());
                            worker.retiring.get_or_insert(Retire::MaxRequests);
                        }
                        message::SOON if !worker.successor_asked => {
                            tracing::debug!(
                                "worker {} is near --max-requests: starting its successor",
                                worker.pid
                            );
                            worker.successor_asked = true;
                        }
                        message::REQUEST_TIMEOUT => {
                            worker.retiring = Some(Retire::RequestTimeout);
                        }
                        _ => {}
                    }
                }
            }
        }
        if self.workers.iter().any(|w| w.ready) {
            self.ever_ready = true;
        }
    }

    /// Collects exited workers and logs how each ended.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (pid, code) = match status {
                WaitStatus::Exited(pid, code) => (pid, Some(code)),
                WaitStatus::Signaled(pid, _, _) => (pid, None),
                _ => continue,
            };
            let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            let worker = self.workers.remove(index);
            let expected = worker.stopping.is_some();
            let how = match status {
                WaitStatus::Exited(_, code) => format!("exited with status {code}"),
                WaitStatus::Signaled(_, signal, _) => {
                    format!("killed by signal {}", signal.as_str())
                }
                _ => "ended".to_owned(),
            };
            let load_failed = code == Some(EXIT_APP_LOAD_FAILED) && !worker.ready;
            if let Some(metrics) = self.metrics.as_mut() {
                metrics.release(worker.slot);
                if !expected && !load_failed {
                    metrics.restarted("crash");
                }
            }
            if load_failed {
                // The worker has reported why, in one line.
                tracing::debug!("worker {pid} {how}");
            } else if expected {
                tracing::info!("worker {pid} {how}");
            } else {
                tracing::warn!("worker {pid} {how}");
            }
            if load_failed {
                self.boot_failed();
            } else if !worker.ready && !expected {
                self.respawn_after = Some(Instant::now() + RESPAWN_BACKOFF);
            }
        }
    }

    /// A new worker could not load the app.
    fn boot_failed(&mut self) {
        if !self.ever_ready {
            // At start (or --reload with nothing running): handled by the main loop.
            self.respawn_after = None;
            if self.watcher.is_some() {
                tracing::error!("the app could not be loaded; waiting for a code change");
                self.reload_failed = true;
            }
            return;
        }
        tracing::error!(
            "the new workers could not load the app or the TLS certificate (see the error \
             above): keeping the old ones"
        );
        self.reload_failed = true;
        for worker in &mut self.workers {
            if worker.retiring == Some(Retire::Reload) {
                worker.retiring = None;
            }
        }
        // Replacements that had not booted yet will fail the same way.
        for worker in self
            .workers
            .iter_mut()
            .filter(|w| !w.ready && w.stopping.is_none())
        {
            let _ = kill(worker.pid, Signal::SIGKILL);
            worker.stopping = Some(Instant::now());
        }
    }

    /// Liveness, memory and lifetime checks; kills workers past the graceful deadline (plus
    /// [`WIND_DOWN`]).
    fn check_workers(&mut self) {
        let now = Instant::now();
        for worker in &mut self.workers {
            if let Some(since) = worker.stopping {
                if now.duration_since(since) > self.options.graceful_timeout + WIND_DOWN {
                    tracing::warn!(
                        "worker {} still busy after the graceful timeout: killing",
                        worker.pid
                    );
                    let _ = kill(worker.pid, Signal::SIGKILL);
                    worker.stopping = Some(now + Duration::from_secs(3600));
                }
                continue;
            }
            if let Some(timeout) = self.options.timeout {
                let silent = now.duration_since(worker.last_beat);
                let booting = !worker.ready;
                // A booting worker (importing the app) gets the same allowance, plus a margin.
                if silent
                    > timeout
                        + if booting {
                            Duration::from_secs(30)
                        } else {
                            Duration::ZERO
                        }
                {
                    tracing::error!(
                        "worker {} timed out (no heartbeat for {:.1}s): killing",
                        worker.pid,
                        silent.as_secs_f64()
                    );
                    let _ = kill(worker.pid, Signal::SIGKILL);
                    worker.stopping = Some(now);
                    if let Some(metrics) = self.metrics.as_mut() {
                        metrics.restarted("timeout");
                    }
                    continue;
                }
            }
            if worker.retiring.is_some() || !worker.ready {
                continue;
            }
            if let Some(limit) = self.options.max_worker_lifetime {
                let age = now.duration_since(worker.started);
                if age > limit {
                    worker.retiring = Some(Retire::Lifetime);
                    continue;
                }
                // The successor boots while this one still serves (a tick early, too: the
                // check runs once per tick).
                let lead = crate::recycle::lead(worker.boot.unwrap_or_default()) + TICK;
                if !worker.successor_asked && age + lead > limit {
                    worker.successor_asked = true;
                }
            }
            if let Some(limit) = self.options.max_worker_memory {
                if resident_bytes(worker.pid).is_some_and(|rss| rss > limit) {
                    worker.retiring = Some(Retire::Memory);
                }
            }
        }
    }

    /// Keeps `target` workers serving: spawns replacements, then stops retiring workers once
    /// enough others are ready.
    fn maintain(&mut self, host: &mut dyn WorkerHost) -> Result<(), SupervisorError> {
        if self.phase != Phase::Running {
            return Ok(());
        }
        if self.respawn_after.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        self.respawn_after = None;
        // Counted towards `target`: not on its way out, and not a spare.
        let serving = |w: &Worker| w.stopping.is_none() && w.retiring.is_none() && !w.standby;
        let spare = |w: &Worker| w.stopping.is_none() && w.retiring.is_none() && w.standby;
        // More serving workers than wanted (SIGTTOU): retire the oldest.
        while self.workers.iter().filter(|w| serving(w)).count() > self.target {
            if let Some(oldest) = self.workers.iter_mut().find(|w| serving(w)) {
                oldest.retiring = Some(Retire::Excess);
            }
        }
        // A free place goes to a ready spare first: SIGUSR2 and it accepts, a signal's delay
        // instead of a boot's. A spare still booting is promoted when it is ready.
        let mut free = self.target
            - self
                .workers
                .iter()
                .filter(|w| serving(w))
                .count()
                .min(self.target);
        for worker in &mut self.workers {
            if free == 0 {
                break;
            }
            if spare(worker) && worker.ready {
                tracing::debug!("worker {} promoted from spare", worker.pid);
                let _ = kill(worker.pid, Signal::SIGUSR2);
                worker.standby = false;
                free -= 1;
            }
        }
        let booting_spares = self.workers.iter().filter(|w| spare(w) && !w.ready).count();
        let wanted = free.saturating_sub(booting_spares);
        // Spares: one for each serving worker near its limit, beyond those that will fill a
        // free place; extra ones (their worker went another way) are retired.
        let asked = self
            .workers
            .iter()
            .filter(|w| serving(w) && w.successor_asked)
            .count();
        let spares = self.workers.iter().filter(|w| spare(w)).count() - free.min(booting_spares);
        for _ in asked..spares {
            if let Some(newest) = self.workers.iter_mut().rev().find(|w| spare(w)) {
                newest.retiring = Some(Retire::Excess);
            }
        }
        let booting = self
            .workers
            .iter()
            .any(|w| !w.ready && w.stopping.is_none());
        // The first worker boots alone, so a broken app fails once, with one message.
        let can_spawn = !self.reload_failed && (self.ever_ready || !booting);
        if can_spawn {
            let count = if self.ever_ready {
                wanted
            } else {
                wanted.min(1)
            };
            for _ in 0..count {
                self.spawn(host, false)?;
            }
            if self.ever_ready && !self.reloading {
                for _ in spares..asked {
                    self.spawn(host, true)?;
                }
            }
        }
        let ready_serving = self
            .workers
            .iter()
            .filter(|w| serving(w) && w.ready)
            .count();
        let enough_ready = ready_serving >= self.target;
        // Workers that take new connections and will go on doing so.
        let accepting: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.ready && !w.standby && w.stopping.is_none() && w.retiring.is_none())
            .map(|w| w.pid)
            .collect();
        let now = Instant::now();
        let replacement_booting = self
            .workers
            .iter()
            .any(|w| !w.ready && w.stopping.is_none() && w.retiring.is_none());
        for worker in &mut self.workers {
            let Some(reason) = worker.retiring else {
                continue;
            };
            if worker.stopping.is_some() {
                continue;
            }
            let go = match reason {
                Retire::Excess => true,
                _ if !worker.ready => true,
                // A reload swaps the whole set: the old workers serve until it is all ready.
                Retire::Reload => enough_ready,
                // A limit: gone as soon as someone else can accept.
                _ => accepting.iter().any(|&pid| pid != worker.pid),
            };
            if go {
                tracing::info!("worker {} recycled: {}", worker.pid, reason.reason());
                if let (Some(metrics), Some(label)) = (self.metrics.as_mut(), reason.label()) {
                    metrics.restarted(label);
                }
                let _ = kill(worker.pid, Signal::SIGTERM);
                worker.stopping = Some(now);
            } else if worker.paused
                && !worker.resumed
                && replacement_booting
                && worker
                    .paused_at
                    .is_some_and(|at| now.duration_since(at) < LAST_ACCEPTOR_WAIT)
            {
                // Its replacement is on the way: new connections wait in the backlog for it
                // (queued, not refused) rather than overshoot the limit.
            } else if worker.paused && !worker.resumed {
                // The last worker able to accept paused at its limit: accept again until its
                // successor is ready.
                tracing::debug!(
                    "worker {} reached --max-requests but no other worker is ready: it keeps \
                     accepting until one is",
                    worker.pid
                );
                let _ = kill(worker.pid, Signal::SIGUSR2);
                worker.resumed = true;
            }
        }
        if self.reloading
            && !self
                .workers
                .iter()
                .any(|w| w.retiring == Some(Retire::Reload))
        {
            self.reloading = false;
            if !self.reload_failed {
                tracing::info!("reload complete");
            }
        }
        Ok(())
    }

    /// Forks one worker. In the child this never returns.
    fn spawn(&mut self, host: &mut dyn WorkerHost, standby: bool) -> Result<(), SupervisorError> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let slot = self.metrics.as_mut().and_then(Metrics::take_slot);
        let forked = host.fork();
        if forked.is_err() {
            if let Some(metrics) = self.metrics.as_mut() {
                metrics.release(slot);
            }
        }
        match forked? {
            Some(pid) => {
                drop(write);
                let now = Instant::now();
                self.workers.push(Worker {
                    pid,
                    pipe: read,
                    started: now,
                    last_beat: now,
                    ready: false,
                    boot: None,
                    retiring: None,
                    successor_asked: false,
                    paused: false,
                    paused_at: None,
                    resumed: false,
                    standby,
                    stopping: None,
                    slot,
                });
                Ok(())
            }
            None => {
                // The child: drop everything that belongs to the supervisor, restore the signal
                // mask, and become a worker.
                drop(read);
                self.workers.clear();
                self.signal_fd = None;
                self.watcher = None;
                // The worker counts into its slot; the endpoint is the supervisor's (dropping
                // it closes this copy of its socket).
                if let (Some(metrics), Some(index)) = (&self.metrics, slot) {
                    crate::metrics::attach(metrics.region.slot(index));
                }
                self.metrics = None;
                let _ = nix::sys::signal::pthread_sigmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&self.original_mask),
                    None,
                );
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
                let link = WorkerLink::new(write);
                let link = if standby { link.standby() } else { link };
                let status = host.run_worker(link);
                // The host normally ends the process itself (os._exit); this is the fallback.
                std::process::exit(status)
            }
        }
    }

    /// Answers the endpoint's connections that are ready (`/metrics`, `/healthz`, `/readyz`).
    fn serve_metrics(&mut self) {
        let Some(mut metrics) = self.metrics.take() else {
            return;
        };
        // Ready: serving, and at least one worker that takes new connections.
        let ready = self.phase == Phase::Running
            && self
                .workers
                .iter()
                .any(|w| w.ready && !w.standby && w.stopping.is_none());
        let workers = &self.workers;
        let Metrics {
            endpoint,
            region,
            retired,
            restarts,
            ..
        } = &mut metrics;
        endpoint.serve(|path| match path {
            "/metrics" => {
                let mut values = *retired;
                let mut states = [0u64; exposition::WORKER_STATES.len()];
                let mut rss = 0;
                for worker in workers {
                    if let Some(index) = worker.slot {
                        values.add(&region.read(index), true);
                    }
                    let state = if worker.stopping.is_some() {
                        3
                    } else if !worker.ready {
                        0
                    } else if worker.standby {
                        2
                    } else {
                        1
                    };
                    states[state] += 1;
                    rss += resident_bytes(worker.pid).unwrap_or(0);
                }
                let scrape = exposition::Scrape {
                    values,
                    workers: states,
                    restarts: *restarts,
                    rss_bytes: rss,
                };
                Answer {
                    status: 200,
                    content_type: exposition::CONTENT_TYPE,
                    body: exposition::render(&scrape),
                }
            }
            "/healthz" => Answer::text(200, "ok\n"),
            "/readyz" if ready => Answer::text(200, "ready\n"),
            "/readyz" => Answer::text(503, "not ready\n"),
            _ => Answer::text(404, "not found: /metrics, /healthz or /readyz\n"),
        });
        self.metrics = Some(metrics);
    }

    /// Asks every worker to drain and stop, and closes the supervisor's own handles on the
    /// listeners, so that new connections are refused once the workers have closed theirs.
    fn begin_stop(&mut self, host: &mut dyn WorkerHost) {
        host.close_listeners();
        let now = Instant::now();
        for worker in &mut self.workers {
            if worker.stopping.is_none() {
                let _ = kill(worker.pid, Signal::SIGTERM);
                worker.stopping = Some(now);
            }
        }
        self.phase = Phase::Stopping;
    }
}

/// A process's resident set size, from /proc/PID/statm.
fn resident_bytes(pid: Pid) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{}/statm", pid.as_raw())).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some(pages * page_size)
}
