//! The supervisor: the parent process that forks workers, watches them and replaces them.
//!
//! Rule 1: no threads and no runtime here. Signals are blocked and read from a signalfd in one
//! poll loop with the workers' pipes, so every event is handled in one place, in order, and a
//! fork never happens while another thread holds a lock.
//! Rule 2: capacity never drops to zero on purpose. A worker to be replaced (reload,
//! max-requests, memory, lifetime, request timeout) keeps serving until its replacement says it
//! is ready; only then is it asked to drain.
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

/// Exit status of a worker whose app could not be loaded.
pub const EXIT_APP_LOAD_FAILED: i32 = 3;

/// Messages a worker writes on its pipe, one byte each.
pub mod message {
    /// The worker accepts connections.
    pub const READY: u8 = b'R';
    /// The worker's event loop is alive.
    pub const HEARTBEAT: u8 = b'H';
    /// The worker served --max-requests: replace it.
    pub const MAX_REQUESTS: u8 = b'M';
    /// A request ran past --request-timeout: replace the worker.
    pub const REQUEST_TIMEOUT: u8 = b'T';
}

/// The worker's end of its pipe to the supervisor.
#[derive(Debug, Clone)]
pub struct WorkerLink {
    fd: std::sync::Arc<OwnedFd>,
}

impl WorkerLink {
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
}

/// Supervisor settings, from the command line.
#[derive(Debug, Clone)]
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
}

#[derive(Debug)]
struct Worker {
    pid: Pid,
    pipe: OwnedFd,
    started: Instant,
    last_beat: Instant,
    ready: bool,
    /// To be replaced: keeps serving until enough replacements are ready.
    retiring: Option<Retire>,
    /// Asked to stop (SIGTERM sent) at this instant.
    stopping: Option<Instant>,
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
}

impl Supervisor {
    fn run(&mut self, host: &mut dyn WorkerHost) -> Result<(), SupervisorError> {
        self.spawn(host)?;
        loop {
            self.wait_for_events(host)?;
            self.check_workers();
            match self.phase {
                Phase::StopAt(at) if Instant::now() >= at => self.begin_stop(),
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
        let timeout = PollTimeout::try_from(TICK).expect("a 200 ms tick fits");
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(fds);
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
                            for line in self.options.announce.drain(..) {
                                tracing::info!("{line}");
                            }
                            tracing::info!("worker {} booted", worker.pid);
                        }
                        message::HEARTBEAT => worker.last_beat = Instant::now(),
                        message::MAX_REQUESTS => {
                            worker.retiring.get_or_insert(Retire::MaxRequests);
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
        tracing::error!("the new workers could not load the app: keeping the old ones");
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
                    continue;
                }
            }
            if worker.retiring.is_some() || !worker.ready {
                continue;
            }
            if let Some(limit) = self.options.max_worker_lifetime {
                if now.duration_since(worker.started) > limit {
                    worker.retiring = Some(Retire::Lifetime);
                    continue;
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
        let serving = |w: &Worker| w.stopping.is_none() && w.retiring.is_none();
        // More serving workers than wanted (SIGTTOU): retire the oldest.
        while self.workers.iter().filter(|w| serving(w)).count() > self.target {
            if let Some(oldest) = self.workers.iter_mut().find(|w| serving(w)) {
                oldest.retiring = Some(Retire::Excess);
            }
        }
        let booting = self
            .workers
            .iter()
            .any(|w| !w.ready && w.stopping.is_none());
        let wanted = self.target
            - self
                .workers
                .iter()
                .filter(|w| serving(w))
                .count()
                .min(self.target);
        // The first worker boots alone, so a broken app fails once, with one message.
        let can_spawn = !self.reload_failed && (self.ever_ready || !booting);
        if can_spawn {
            let count = if self.ever_ready {
                wanted
            } else {
                wanted.min(1)
            };
            for _ in 0..count {
                self.spawn(host)?;
            }
        }
        let ready_serving = self
            .workers
            .iter()
            .filter(|w| serving(w) && w.ready)
            .count();
        let enough_ready = ready_serving >= self.target;
        let now = Instant::now();
        for worker in &mut self.workers {
            let Some(reason) = worker.retiring else {
                continue;
            };
            if worker.stopping.is_some() {
                continue;
            }
            // Excess workers go at once; the others wait for their replacements.
            if enough_ready || reason == Retire::Excess || !worker.ready {
                tracing::info!("worker {} recycled: {}", worker.pid, reason.reason());
                let _ = kill(worker.pid, Signal::SIGTERM);
                worker.stopping = Some(now);
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
    fn spawn(&mut self, host: &mut dyn WorkerHost) -> Result<(), SupervisorError> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        match host.fork()? {
            Some(pid) => {
                drop(write);
                let now = Instant::now();
                self.workers.push(Worker {
                    pid,
                    pipe: read,
                    started: now,
                    last_beat: now,
                    ready: false,
                    retiring: None,
                    stopping: None,
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
                let _ = nix::sys::signal::pthread_sigmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&self.original_mask),
                    None,
                );
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
                let link = WorkerLink {
                    fd: std::sync::Arc::new(write),
                };
                let status = host.run_worker(link);
                // The host normally ends the process itself (os._exit); this is the fallback.
                std::process::exit(status)
            }
        }
    }

    /// Asks every worker to drain and stop.
    fn begin_stop(&mut self) {
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
