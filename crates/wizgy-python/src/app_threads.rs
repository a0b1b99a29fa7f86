//! The app threads: a fixed pool of OS threads that run exchanges, each holding the GIL only
//! while Python runs.
//!
//! Each thread attaches to the interpreter once for its whole life and detaches while it waits
//! for work or for I/O, so its Python thread state (and `threading.local` data such as
//! per-thread database connections) survives from one request to the next.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::lock;
use wizgy_core::exchange::{Dispatch, Exchange};
use wizgy_core::supervisor::{message, WorkerLink};

use crate::apps::Apps;
use crate::inline::{self, Routes};
use crate::wsgi::environ::EnvironShared;
use crate::wsgi::exchange;

/// Exchanges waiting for a free app thread, per thread; past this the connection answers 503.
const QUEUE_PER_THREAD: usize = 16;

/// An app thread that has been in one exchange this long counts as blocked (sleeping, waiting
/// on a database...): queued work then wakes another thread.
const STUCK: Duration = Duration::from_micros(100);

/// Queued work that has waited this long wakes another thread whatever the awake ones do, so
/// an app that blocks for less than [`STUCK`] at a time is not capped at one thread forever.
/// Not shorter: a CPU-bound app keeps a deep queue (64 flask requests ≈ 10 ms), and a second
/// thread then only fights for the GIL (1 ms here measured flask p99 12 -> 87 ms).
const WAITED: Duration = Duration::from_millis(20);

/// How often the monitor looks for blocked threads while work waits and threads are parked.
const MONITOR_TICK: Duration = Duration::from_millis(1);

/// `Member::since` of a thread that was woken and has not taken an exchange yet (it may be
/// waiting for the GIL): while one is starting, no other is woken.
const STARTING: u64 = u64::MAX;

/// After a woken thread found the GIL busy, no thread is woken for this long.
///
/// Why: "in its exchange for a while" cannot tell a thread blocked outside Python (the case
/// for a helper) from one running Python for a while (a Django view takes ~0.4 ms here). A
/// helper woken for the second kind waits for the GIL until the interpreter forces a switch
/// (the switch interval, 5 ms by default), then only takes turns with the running thread:
/// every thread woken that way added 5 ms turns to every request's latency (measured:
/// django p99 219 ms with 64 threads taking turns). So a woken thread times its wait for the
/// GIL; a long wait means the GIL is busy, and that thread parks again at once (without
/// taking work) and wakes are held back for this long, after which one thread probes again.
const GIL_BUSY_BACKOFF: Duration = Duration::from_millis(20);

/// The pool's shared state.
///
/// Why not a channel: a channel wakes a receiver for every message, and every woken thread
/// then competes for the GIL, so under load each request pays a futex wake, a context switch
/// and a GIL hand-off (measured: 56 % of the worker's CPU with 64 threads). Here one thread
/// runs everything queued while it keeps the GIL, and another is woken only when every awake
/// thread has been in its exchange longer than [`STUCK`], i.e. is blocked outside Python and
/// a second thread would actually run (or when work has waited [`WAITED`]), and never while a
/// woken thread has yet to start. Idle threads are woken last-parked-first, so the same few
/// threads (and their caches) do the work.
struct Pool {
    state: Mutex<State>,
    threads: Box<[Member]>,
    epoch: Instant,
    /// The most exchanges queued before the connection answers 503.
    limit: usize,
    monitor: Member,
    /// The monitor is in its long sleep: dispatch must wake it for work left waiting.
    monitor_idle: AtomicBool,
    /// A woken thread that waited this long (µs) for the GIL found it busy: half the
    /// interpreter's switch interval, the longest a thread waits when the holder runs Python.
    gil_busy_after: u64,
    /// No thread is woken before this time (as [`Pool::now`]); see [`GIL_BUSY_BACKOFF`].
    hold_wakes_until: AtomicU64,
    /// With `--inline auto`: how fast each route has been (see [`crate::inline`]).
    routes: Option<Routes>,
    /// App threads that hold the GIL or are about to take it. A thread counts itself out only
    /// once it has let the GIL go to park, which is after it left `awake`: without this, an
    /// inline call started in that window (the parking thread preempted, on a busy core)
    /// waits for the GIL, runs slow and demotes its route (measured: at 64 connections, 2
    /// runs in 3 demoted hello for the whole run).
    in_python: AtomicUsize,
    /// No inline call starts before this time (as [`Pool::now`]): an inline call that found
    /// the GIL taken by a thread that is not ours (the app's own) holds them all off a while.
    hold_inline_until: AtomicU64,
    /// The I/O thread is taking the GIL to run queued proven work itself (see
    /// [`Queue::try_inline`]): app threads take no more exchanges and park as they finish.
    io_waiting: AtomicBool,
    /// Signalled, while `io_waiting`, when an app thread has parked and let the GIL go.
    parked: Condvar,
}

/// A queued exchange.
struct Queued {
    work: Exchange,
    /// When it was queued (as [`Pool::now`]).
    at: u64,
    /// Its slot in the route table, when inline dispatch learns from it (its body is all read).
    route: Option<usize>,
    /// Its route had proven fast when it was queued: it could have run inline.
    proven: bool,
}

struct State {
    queue: VecDeque<Queued>,
    /// Exchanges queued or running on app threads whose route had not proven fast: while there
    /// is none, every exchange the app threads hold is fast, and the I/O thread may take over.
    unproven: usize,
    /// Parked threads, the most recently parked last.
    idle: Vec<usize>,
    /// Threads not parked (including those starting).
    awake: usize,
    /// Threads woken that have not taken an exchange yet (`Member::since` is [`STARTING`]):
    /// while one is starting, no other is woken.
    starting: usize,
    /// When (as [`Pool::now`]) an awake thread last took an exchange; 0 once that thread
    /// parked. Younger than [`STUCK`]: an awake thread is running Python and will be back
    /// for queued work soon.
    latest_start: u64,
    /// No more exchanges will come: threads exit once the queue is empty.
    closed: bool,
}

/// One parkable thread of the pool.
#[derive(Default)]
struct Member {
    /// When (µs after `epoch`, never 0) the thread last took an exchange; 0 while it is
    /// parked; [`STARTING`] from its wake-up to its first exchange.
    since: AtomicU64,
    handle: OnceLock<Thread>,
    woken: AtomicBool,
}

impl Member {
    fn unpark(&self) {
        self.woken.store(true, Ordering::Release);
        if let Some(thread) = self.handle.get() {
            thread.unpark();
        }
    }

    /// Parks until [`Member::unpark`] (or `timeout`).
    fn park(&self, timeout: Option<Duration>) {
        match timeout {
            Some(timeout) => {
                if !self.woken.load(Ordering::Acquire) {
                    std::thread::park_timeout(timeout);
                }
            }
            None => {
                while !self.woken.load(Ordering::Acquire) {
                    std::thread::park();
                }
            }
        }
        self.woken.store(false, Ordering::Relaxed);
    }
}

impl Pool {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The first queued exchange if its route had proven fast.
    fn pop_proven(&self) -> Option<Queued> {
        let mut state = self.lock();
        if state.queue.front()?.proven {
            state.queue.pop_front()
        } else {
            None
        }
    }

    /// Picks a parked thread to wake if queued work is waiting and no awake thread can take
    /// it soon. Called with the lock held; the caller unparks the thread after unlocking.
    fn helper(&self, state: &mut State, now: u64) -> Option<usize> {
        let queued = &state.queue.front()?.at;
        if state.idle.is_empty() || self.io_waiting.load(Ordering::Acquire) {
            return None;
        }
        if state.awake > 0 {
            if state.starting > 0 || now < self.hold_wakes_until.load(Ordering::Relaxed) {
                return None;
            }
            let young = now.saturating_sub(state.latest_start) < STUCK.as_micros() as u64;
            let waited = now.saturating_sub(*queued) >= WAITED.as_micros() as u64;
            if young && !waited {
                return None;
            }
        }
        let index = state.idle.pop()?;
        state.awake += 1;
        state.starting += 1;
        self.threads[index].since.store(STARTING, Ordering::Relaxed);
        Some(index)
    }

    /// The next exchange for thread `index`, parking (via `wait`) while there is none;
    /// `None` once the pool is closed and drained. `wait` returns how long (µs) the thread
    /// waited for the GIL after it was woken. `finished_unproven`: the thread's last exchange,
    /// now done, was not proven fast.
    fn next(
        &self,
        index: usize,
        mut finished_unproven: bool,
        wait: impl Fn(&Member) -> u64,
    ) -> Option<Queued> {
        let member = &self.threads[index];
        let mut gil_wait = 0;
        loop {
            {
                let mut state = self.lock();
                if std::mem::take(&mut finished_unproven) {
                    state.unproven -= 1;
                }
                let now = self.now();
                let since = member.since.load(Ordering::Relaxed);
                if since == STARTING {
                    state.starting -= 1;
                }
                let busy = gil_wait >= self.gil_busy_after && !state.closed;
                if busy {
                    // Woken for work, but another thread is running Python: let it run.
                    let until = now + GIL_BUSY_BACKOFF.as_micros() as u64;
                    self.hold_wakes_until.store(until, Ordering::Relaxed);
                }
                // While the I/O thread takes over, threads finish what they hold and park.
                let take = !busy && !self.io_waiting.load(Ordering::Acquire);
                if let Some(job) = take.then(|| state.queue.pop_front()).flatten() {
                    if wizgy_core::metrics::is_enabled() {
                        let waited = Duration::from_micros(now.saturating_sub(job.at));
                        wizgy_core::metrics::queue_waited(waited);
                    }
                    member.since.store(now, Ordering::Relaxed);
                    state.latest_start = now;
                    return Some(job);
                }
                if state.closed {
                    state.awake -= 1;
                    if state.awake == 0 {
                        // The last one out: the monitor may be in its long sleep.
                        self.monitor.unpark();
                    }
                    return None;
                }
                state.idle.push(index);
                state.awake -= 1;
                if since == state.latest_start {
                    // The thread that took work last is parking: it is not coming back soon.
                    state.latest_start = 0;
                }
                member.since.store(0, Ordering::Relaxed);
            }
            gil_wait = wait(member);
        }
    }

    /// Wakes threads for blocked work every [`MONITOR_TICK`] while work waits and threads are
    /// parked; otherwise sleeps until dispatch leaves work waiting.
    fn monitor(&self) {
        loop {
            let (wake, watch) = {
                let mut state = self.lock();
                if state.closed && state.awake == 0 {
                    return;
                }
                let wake = self.helper(&mut state, self.now());
                let watch = !state.queue.is_empty() && !state.idle.is_empty();
                if !watch {
                    self.monitor_idle.store(true, Ordering::SeqCst);
                }
                (wake, watch)
            };
            if let Some(index) = wake {
                self.threads[index].unpark();
            }
            let tick = if watch {
                MONITOR_TICK
            } else {
                Duration::from_secs(1)
            };
            self.monitor.park(Some(tick));
        }
    }
}

/// The longest the I/O thread waits for busy app threads to park when it takes over their
/// queue (their calls are proven under [`inline::FAST`] each).
const TAKEOVER_WAIT: Duration = Duration::from_millis(2);

/// The dispatcher handed to the connections; dropping the last one closes the pool.
struct Queue(Arc<Pool>, Option<Inline>);

/// What the I/O thread needs to run an exchange itself.
struct Inline {
    app: Arc<Apps>,
    shared: Arc<EnvironShared>,
    /// The watchdog's slot for inline calls, with `--request-timeout`.
    slot: Option<(Arc<Vec<Slot>>, usize)>,
}

impl Queue {
    /// Runs `exchange` (its route, `route`, has proven fast and its body is all here) on this
    /// thread, the I/O thread, if the GIL is free or about to be; otherwise gives it back.
    ///
    /// Two ways in. Idle: no app thread is awake or holds the GIL and nothing is queued. Or
    /// takeover: app threads are busy, but only with proven-fast exchanges. Left alone, such a
    /// pool never goes idle under steady load (each response brings the next request, queued
    /// before the threads drain), and a fast app stays on the slower path for good (measured:
    /// flask at 64 connections, every call on the app threads). So the I/O thread tells the
    /// threads to park as they finish, takes the GIL (waiting at most for the calls they are
    /// in, each proven under [`inline::FAST`]), runs this exchange and then the queued ones,
    /// all proven, itself. The pool is then idle, and later requests run inline directly.
    fn try_inline(
        &self,
        exchange: Exchange,
        inline: &Inline,
        routes: &Routes,
        route: usize,
    ) -> Option<Exchange> {
        let pool = &self.0;
        let takeover = {
            let mut state = pool.lock();
            // Held off (rarely): only then is the clock read, not on every request.
            let hold = pool.hold_inline_until.load(Ordering::Relaxed);
            if state.closed || (hold != 0 && pool.now() < hold) {
                return Some(exchange);
            }
            let parked =
                |state: &State| state.awake == 0 && pool.in_python.load(Ordering::Acquire) == 0;
            let idle = parked(&state) && state.queue.is_empty();
            if !idle && state.unproven > 0 {
                return Some(exchange);
            }
            if !idle {
                // Wait (bounded) for the threads to park: run beside them, a call would wait
                // for the GIL whenever theirs let it go, measure slow and demote its route.
                pool.io_waiting.store(true, Ordering::Release);
                let deadline = Instant::now() + TAKEOVER_WAIT;
                while !parked(&state) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        pool.io_waiting.store(false, Ordering::Release);
                        return Some(exchange); // queued, and a thread woken, by dispatch
                    }
                    state = pool
                        .parked
                        .wait_timeout(state, left)
                        .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
                }
            }
            !idle
        };
        if inline::keep_thread_state() {
            if let Some((slots, index)) = &inline.slot {
                slots[*index].ident.store(python_ident(), Ordering::Relaxed);
            }
        }
        if wizgy_core::metrics::is_enabled() {
            // It waited for no thread: counted, so every app exchange is one observation.
            wizgy_core::metrics::queue_waited(Duration::ZERO);
        }
        let asked = Instant::now();
        let gil_wait = Python::attach(|py| {
            let gil_wait = asked.elapsed();
            self.run_inline(py, inline, routes, exchange, route);
            if takeover {
                // The queue, all proven fast, drains here.
                while let Some(Queued {
                    work, at, route, ..
                }) = pool.pop_proven()
                {
                    if wizgy_core::metrics::is_enabled() {
                        let waited = Duration::from_micros(pool.now().saturating_sub(at));
                        wizgy_core::metrics::queue_waited(waited);
                    }
                    let route = route.expect("a proven exchange has a route");
                    self.run_inline(py, inline, routes, work, route);
                }
            }
            gil_wait
        });
        if takeover {
            pool.io_waiting.store(false, Ordering::Release);
            // Whatever is left (nothing, while this thread is the only one that queues) goes
            // back to the app threads.
            let wake = pool.helper(&mut pool.lock(), pool.now());
            if let Some(index) = wake {
                pool.threads[index].unpark();
            }
        }
        // Idle, the GIL should have been free; taking over, the threads' calls are proven fast.
        if gil_wait >= inline::FAST {
            let until = pool.now() + inline::GIL_TAKEN_BACKOFF.as_micros() as u64;
            pool.hold_inline_until.store(until, Ordering::Relaxed);
            tracing::debug!("an inline call waited {gil_wait:?} for the GIL: inline paused");
        }
        None
    }

    /// Runs one exchange on the I/O thread, which holds the GIL; demotes its route if it
    /// turned out slow or big.
    fn run_inline(
        &self,
        py: Python<'_>,
        inline: &Inline,
        routes: &Routes,
        exchange: Exchange,
        route: usize,
    ) {
        let slot = inline.slot.as_ref().map(|(slots, index)| &slots[*index]);
        if let Some(slot) = slot {
            *lock(&slot.current) = Some(InFlight::of(&exchange));
        }
        exchange.events.set_unbounded();
        let events = exchange.events.clone();
        let started = Instant::now();
        run_guarded(py, &inline.app, &inline.shared, exchange);
        let took = started.elapsed();
        let held = events.queued_bytes();
        drop(events);
        if let Some(slot) = slot {
            *lock(&slot.current) = None;
        }
        if held > inline::BIG {
            routes.demote(route);
            tracing::debug!("a route run inline made {held} bytes: back to the app threads");
        } else if took >= inline::FAST {
            routes.suspect(route);
            tracing::debug!("a route run inline took {took:?}: its next call on an app thread");
        }
    }
}

impl Dispatch for Queue {
    fn dispatch(&self, exchange: Exchange) -> Result<(), Box<Exchange>> {
        let pool = &self.0;
        // Inline dispatch learns from, and may run, only exchanges whose body is all read.
        let mut route = None;
        let mut proven = false;
        let mut exchange = exchange;
        if let (Some(inline), Some(routes)) = (&self.1, &pool.routes) {
            if exchange.body.is_none() {
                let key = Routes::key(&exchange.request.head);
                route = Some(key);
                proven = routes.ready(key);
                if proven {
                    match self.try_inline(exchange, inline, routes, key) {
                        Some(refused) => exchange = refused,
                        None => return Ok(()),
                    }
                }
            }
        }
        let (wake, wake_monitor) = {
            let mut state = pool.lock();
            if state.queue.len() >= pool.limit || state.closed {
                return Err(Box::new(exchange));
            }
            let now = pool.now();
            state.queue.push_back(Queued {
                work: exchange,
                at: now,
                route,
                proven,
            });
            state.unproven += usize::from(!proven);
            let wake = pool.helper(&mut state, now);
            // Work left waiting while threads are parked: the monitor must watch it. (It sets
            // the flag under this lock, so the check cannot miss it going to sleep.)
            let watch = wake.is_none() && !state.idle.is_empty();
            (
                wake,
                watch && pool.monitor_idle.swap(false, Ordering::SeqCst),
            )
        };
        if let Some(index) = wake {
            pool.threads[index].unpark();
        }
        if wake_monitor {
            pool.monitor.unpark();
        }
        Ok(())
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let idle = {
            let mut state = self.0.lock();
            state.closed = true;
            let idle = std::mem::take(&mut state.idle);
            state.awake += idle.len();
            idle
        };
        for index in idle {
            self.0.threads[index].unpark();
        }
        self.0.monitor.unpark();
    }
}

/// A running pool of app threads.
pub struct AppThreads {
    threads: Vec<JoinHandle<()>>,
}

impl AppThreads {
    /// Starts `count` threads running `app`; returns the pool and its dispatcher. With a
    /// watchdog, a thread whose exchange outlives its timeout has its Python stack logged and
    /// the worker asks to be recycled.
    pub fn start(
        app: Apps,
        shared: EnvironShared,
        count: usize,
        watchdog: Option<Watchdog>,
        inline: bool,
    ) -> std::io::Result<(AppThreads, Arc<dyn Dispatch>)> {
        let pool = Arc::new(Pool {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(count * QUEUE_PER_THREAD),
                unproven: 0,
                idle: Vec::with_capacity(count),
                awake: count,
                starting: 0,
                latest_start: 0,
                closed: false,
            }),
            threads: (0..count).map(|_| Member::default()).collect(),
            epoch: Instant::now(),
            limit: count * QUEUE_PER_THREAD,
            monitor: Member::default(),
            monitor_idle: AtomicBool::new(false),
            gil_busy_after: gil_busy_after(),
            hold_wakes_until: AtomicU64::new(0),
            routes: inline.then(Routes::default),
            in_python: AtomicUsize::new(count),
            hold_inline_until: AtomicU64::new(0),
            io_waiting: AtomicBool::new(false),
            parked: Condvar::new(),
        });
        let app = Arc::new(app);
        let shared = Arc::new(shared);
        // One slot per thread, and one for inline calls on the I/O thread.
        let slots: Option<Arc<Vec<Slot>>> = watchdog
            .as_ref()
            .map(|_| Arc::new((0..=count).map(|_| Slot::default()).collect()));
        let inline = inline.then(|| Inline {
            app: app.clone(),
            shared: shared.clone(),
            slot: slots.clone().map(|slots| (slots, count)),
        });
        // Made first: if a spawn below fails, dropping it lets the started threads exit.
        let queue = Queue(pool.clone(), inline);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (app, shared, pool) = (app.clone(), shared.clone(), pool.clone());
            let slot = slots.clone().map(|slots| (slots, index));
            let thread = std::thread::Builder::new()
                .name(format!("wizgy-app-{index}"))
                .spawn(move || serve(&app, &shared, &pool, index, slot))?;
            threads.push(thread);
        }
        let monitor = pool.clone();
        let thread = std::thread::Builder::new()
            .name("wizgy-pool".into())
            .spawn(move || {
                let _ = monitor.monitor.handle.set(std::thread::current());
                // Batch like the threads it wakes: its 1 ms ticks must not preempt them.
                wizgy_core::server::tune_worker_thread();
                monitor.monitor();
            })?;
        threads.push(thread);
        if let (Some(watchdog), Some(slots)) = (watchdog, slots) {
            std::thread::Builder::new()
                .name("wizgy-watchdog".into())
                .spawn(move || watch(&watchdog, &slots))?;
        }
        Ok((AppThreads { threads }, Arc::new(queue)))
    }

    /// Waits up to `timeout` for the threads to finish their exchanges and exit (they exit once
    /// every dispatcher is dropped). Threads still busy after that are left to process exit.
    pub fn join(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for thread in self.threads {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// `--request-timeout` on the app side.
pub struct Watchdog {
    pub timeout: Duration,
    pub link: WorkerLink,
}

/// What one app thread is doing, for the watchdog.
#[derive(Default)]
struct Slot {
    /// The thread's Python identity (`threading.get_ident()`), to find its stack.
    ident: AtomicU64,
    current: Mutex<Option<InFlight>>,
}

struct InFlight {
    started: Instant,
    what: String,
    reported: bool,
}

impl InFlight {
    fn of(work: &Exchange) -> InFlight {
        let head = &work.request.head;
        let what = format!(
            "{} {}",
            String::from_utf8_lossy(head.method()),
            String::from_utf8_lossy(head.target())
        );
        InFlight {
            started: Instant::now(),
            what,
            reported: false,
        }
    }
}

/// Runs one exchange. A bug on our side must not take the thread (an app thread, or the I/O
/// thread inline) with it: the exchange's channels are dropped with it, so its connection
/// answers 500, and the thread goes on.
fn run_guarded(py: Python<'_>, app: &Apps, shared: &EnvironShared, work: Exchange) {
    let run = std::panic::AssertUnwindSafe(|| exchange::run(py, app, shared, work));
    if std::panic::catch_unwind(run).is_err() {
        tracing::error!("internal error while running an exchange (see the panic above)");
    }
}

/// `threading.get_ident()` of the calling thread (0 if it cannot be had).
fn python_ident() -> u64 {
    Python::attach(|py| {
        py.import("threading")
            .and_then(|t| t.call_method0("get_ident"))
            .and_then(|i| i.extract::<u64>())
            .unwrap_or(0)
    })
}

fn serve(
    app: &Apps,
    shared: &EnvironShared,
    pool: &Pool,
    index: usize,
    slot: Option<(Arc<Vec<Slot>>, usize)>,
) {
    let _ = pool.threads[index].handle.set(std::thread::current());
    wizgy_core::server::tune_worker_thread();
    let slot = slot.as_ref().map(|(slots, index)| &slots[*index]);
    Python::attach(|py| {
        if let Some(slot) = slot {
            slot.ident.store(python_ident(), Ordering::Relaxed);
        }
        // The GIL is kept from one queued exchange to the next; it is released only to park.
        let wait = |member: &Member| {
            let woken = py.detach(|| {
                pool.in_python.fetch_sub(1, Ordering::Release);
                if pool.io_waiting.load(Ordering::Acquire) {
                    // Under the lock, so the I/O thread cannot miss it between check and wait.
                    drop(pool.lock());
                    pool.parked.notify_all();
                }
                member.park(None);
                pool.in_python.fetch_add(1, Ordering::Acquire);
                Instant::now()
            });
            woken.elapsed().as_micros() as u64
        };
        let mut finished_unproven = false;
        while let Some(job) = pool.next(index, finished_unproven, wait) {
            let Queued {
                work,
                route,
                proven,
                ..
            } = job;
            finished_unproven = !proven;
            if let Some(slot) = slot {
                *lock(&slot.current) = Some(InFlight::of(&work));
            }
            // What inline dispatch learns from: how long a route's calls take here.
            let route = route
                .zip(pool.routes.as_ref())
                .map(|(key, routes)| (routes, key, inline::Judge::start()));
            run_guarded(py, app, shared, work);
            if let Some((routes, key, judge)) = route {
                routes.learned(key, judge.took());
            }
            if let Some(slot) = slot {
                *lock(&slot.current) = None;
            }
        }
    });
    pool.in_python.fetch_sub(1, Ordering::Release);
}

/// [`Pool::gil_busy_after`] from the interpreter's switch interval (`sys.setswitchinterval`).
fn gil_busy_after() -> u64 {
    let interval = Python::attach(|py| {
        py.import("sys")
            .and_then(|sys| sys.call_method0("getswitchinterval"))
            .and_then(|i| i.extract::<f64>())
    })
    .unwrap_or(0.005);
    (interval * 1e6 / 2.0).max(100.0) as u64
}

/// The watchdog thread: reports each exchange that outlives the timeout, once.
fn watch(watchdog: &Watchdog, slots: &Arc<Vec<Slot>>) {
    // The pool holds the other references; when it is gone, so is the work to watch.
    while Arc::strong_count(slots) > 1 {
        std::thread::sleep(Duration::from_millis(100));
        for slot in slots.iter() {
            let overdue = {
                let mut current = lock(&slot.current);
                match current.as_mut() {
                    Some(flight)
                        if !flight.reported && flight.started.elapsed() >= watchdog.timeout =>
                    {
                        flight.reported = true;
                        Some(flight.what.clone())
                    }
                    _ => None,
                }
            };
            let Some(what) = overdue else {
                continue;
            };
            let ident = slot.ident.load(Ordering::Relaxed);
            let stack = Python::attach(|py| python_stack(py, ident))
                .unwrap_or_else(|e| format!("(stack unavailable: {e})\n"));
            tracing::error!(
                "request timed out after {:.1}s: {what}; recycling the worker\nStack of the app thread (most recent call last):\n{}",
                watchdog.timeout.as_secs_f64(),
                stack.trim_end()
            );
            watchdog.link.send(message::REQUEST_TIMEOUT);
        }
    }
}

/// The current Python stack of the thread `ident`, formatted like a traceback.
fn python_stack(py: Python<'_>, ident: u64) -> PyResult<String> {
    let frames = py.import("sys")?.call_method0("_current_frames")?;
    let Some(frame) = frames
        .call_method1("get", (ident,))
        .ok()
        .filter(|f| !f.is_none())
    else {
        return Ok("(the thread is not running Python code)\n".into());
    };
    let lines: Vec<String> = py
        .import("traceback")?
        .call_method1("format_stack", (frame,))?
        .extract()?;
    Ok(lines.concat())
}
