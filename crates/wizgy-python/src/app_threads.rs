//! The app threads: a fixed pool of OS threads that run exchanges, each holding the GIL only
//! while Python runs.
//!
//! Each thread attaches to the interpreter once for its whole life and detaches while it waits
//! for work or for I/O, so its Python thread state (and `threading.local` data such as
//! per-thread database connections) survives from one request to the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use wizgy_core::exchange::{Dispatch, Exchange};
use wizgy_core::supervisor::{message, WorkerLink};

use crate::wsgi::environ::EnvironShared;
use crate::wsgi::exchange;

/// The queue side of the pool, handed to the connections.
struct Queue(Sender<Exchange>);

impl Dispatch for Queue {
    fn dispatch(&self, exchange: Exchange) -> Result<(), Box<Exchange>> {
        self.0
            .try_send(exchange)
            .map_err(|e| Box::new(e.into_inner()))
    }
}

/// A running pool of app threads.
pub struct AppThreads {
    threads: Vec<JoinHandle<()>>,
}

/// Exchanges waiting for a free app thread, per thread; past this the connection answers 503.
const QUEUE_PER_THREAD: usize = 16;

impl AppThreads {
    /// Starts `count` threads running `app`; returns the pool and its dispatcher. With a
    /// watchdog, a thread whose exchange outlives its timeout has its Python stack logged and
    /// the worker asks to be recycled.
    pub fn start(
        app: Py<PyAny>,
        shared: EnvironShared,
        count: usize,
        watchdog: Option<Watchdog>,
    ) -> std::io::Result<(AppThreads, Arc<dyn Dispatch>)> {
        let (tx, rx) = crossbeam_channel::bounded::<Exchange>(count * QUEUE_PER_THREAD);
        let app = Arc::new(app);
        let shared = Arc::new(shared);
        let slots: Option<Arc<Vec<Slot>>> = watchdog
            .as_ref()
            .map(|_| Arc::new((0..count).map(|_| Slot::default()).collect()));
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (app, shared, rx) = (app.clone(), shared.clone(), rx.clone());
            let slot = slots.clone().map(|slots| (slots, index));
            let thread = std::thread::Builder::new()
                .name(format!("wizgy-app-{index}"))
                .spawn(move || serve(&app, &shared, &rx, slot))?;
            threads.push(thread);
        }
        if let (Some(watchdog), Some(slots)) = (watchdog, slots) {
            std::thread::Builder::new()
                .name("wizgy-watchdog".into())
                .spawn(move || watch(&watchdog, &slots))?;
        }
        Ok((AppThreads { threads }, Arc::new(Queue(tx))))
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

fn serve(
    app: &Py<PyAny>,
    shared: &EnvironShared,
    queue: &Receiver<Exchange>,
    slot: Option<(Arc<Vec<Slot>>, usize)>,
) {
    let slot = slot.as_ref().map(|(slots, index)| &slots[*index]);
    Python::attach(|py| {
        if let Some(slot) = slot {
            let ident = py
                .import("threading")
                .and_then(|t| t.call_method0("get_ident"))
                .and_then(|i| i.extract::<u64>())
                .unwrap_or(0);
            slot.ident.store(ident, Ordering::Relaxed);
        }
        while let Ok(work) = py.detach(|| queue.recv()) {
            if let Some(slot) = slot {
                let head = &work.request.head;
                let what = format!(
                    "{} {}",
                    String::from_utf8_lossy(head.method()),
                    String::from_utf8_lossy(head.target())
                );
                *lock(&slot.current) = Some(InFlight {
                    started: Instant::now(),
                    what,
                    reported: false,
                });
            }
            // A bug on our side must not take an app thread with it: the exchange's channels
            // are dropped with it, so its connection answers 500, and the thread goes on.
            let run = std::panic::AssertUnwindSafe(|| exchange::run(py, app, shared, work));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("internal error while running an exchange (see the panic above)");
            }
            if let Some(slot) = slot {
                *lock(&slot.current) = None;
            }
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
