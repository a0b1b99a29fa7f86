//! The app threads: a fixed pool of OS threads that run exchanges, each holding the GIL only
//! while Python runs.
//!
//! Each thread attaches to the interpreter once for its whole life and detaches while it waits
//! for work or for I/O, so its Python thread state (and `threading.local` data such as
//! per-thread database connections) survives from one request to the next.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use wizgy_core::exchange::{Dispatch, Exchange};

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
    /// Starts `count` threads running `app`; returns the pool and its dispatcher.
    pub fn start(
        app: Py<PyAny>,
        shared: EnvironShared,
        count: usize,
    ) -> std::io::Result<(AppThreads, Arc<dyn Dispatch>)> {
        let (tx, rx) = crossbeam_channel::bounded::<Exchange>(count * QUEUE_PER_THREAD);
        let app = Arc::new(app);
        let shared = Arc::new(shared);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (app, shared, rx) = (app.clone(), shared.clone(), rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("wizgy-app-{index}"))
                .spawn(move || serve(&app, &shared, &rx))?;
            threads.push(thread);
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

fn serve(app: &Py<PyAny>, shared: &EnvironShared, queue: &Receiver<Exchange>) {
    Python::attach(|py| {
        while let Ok(work) = py.detach(|| queue.recv()) {
            // A bug on our side must not take an app thread with it: the exchange's channels
            // are dropped with it, so its connection answers 500, and the thread goes on.
            let run = std::panic::AssertUnwindSafe(|| exchange::run(py, app, shared, work));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("internal error while running an exchange (see the panic above)");
            }
        }
    });
}
