//! A worker's side of `--max-requests`: it counts the exchanges it starts, asks the supervisor
//! for a successor shortly before the limit, and stops accepting the moment it reaches it.
//!
//! Why the worker pauses itself rather than waiting to be told: the supervisor's SIGTERM comes
//! a pipe round trip later, and on a busy worker that was enough to overshoot the limit (issue
//! 16: 50 allowed, 77-218 served). Pausing is the safe default because it is undone quickly:
//! when no other worker can accept, the supervisor answers with SIGUSR2 (after waiting up to
//! 100 ms for a replacement that is booting) and the worker accepts again until its successor is
//! ready (the connections that arrive meanwhile wait in the listen backlog, they are not
//! refused).
//!
//! Why ahead: a worker that reaches its limit while its successor boots is the last one able to
//! accept, and must keep accepting. Asking for the successor when the time left at the rate so
//! far drops under [`lead`] (twice the worker's own boot time, plus a margin) means that, with
//! steady traffic, the successor is ready when the limit comes. The successor is a spare: it
//! boots with its accept loops paused (the budget of a [`WorkerLink::is_standby`] link starts
//! paused) and the supervisor's SIGUSR2 promotes it when this worker reaches the limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::supervisor::{message, WorkerLink};

/// Exchanges counted before the rate is trusted. Not half the limit: with a small limit at a
/// high rate, the half left can take less time than one boot (seen: 25 requests in ~20 ms on
/// each of 2 workers whose successors took ~50 ms to boot, and one worker served 186 of 50).
const RATE_SAMPLES: u64 = 8;

/// Margin added to twice the boot time: the supervisor's reaction and a fork.
const LEAD_MARGIN: Duration = Duration::from_millis(20);

/// How long before the limit (at the current rate) the successor is asked for, given how long
/// this worker took to boot: the successor should take about as long.
pub fn lead(boot: Duration) -> Duration {
    boot.saturating_mul(2).saturating_add(LEAD_MARGIN)
}

/// The exchange count of one worker and what follows from it.
#[derive(Debug)]
pub struct RequestBudget {
    /// Exchanges after which the worker stops accepting (0: no limit).
    limit: u64,
    served: AtomicU64,
    /// When the first exchange started: the rate is measured from here, not from boot, so an
    /// idle start does not make the limit look further away than it is.
    first_at: OnceLock<Instant>,
    lead: Duration,
    successor_asked: AtomicBool,
    /// True while the accept loops may accept.
    accepting: watch::Sender<bool>,
    /// The pipe to the supervisor; without one (`serve()` in-process) there is no one to hand
    /// over to, and the budget only counts.
    link: Option<WorkerLink>,
}

impl RequestBudget {
    pub fn new(limit: u64, link: Option<WorkerLink>, boot: Duration) -> Self {
        RequestBudget {
            limit,
            served: AtomicU64::new(0),
            first_at: OnceLock::new(),
            lead: lead(boot),
            successor_asked: AtomicBool::new(false),
            // A spare waits for the supervisor's SIGUSR2 before its first accept.
            accepting: watch::channel(!link.as_ref().is_some_and(WorkerLink::is_standby)).0,
            link,
        }
    }

    /// Counts one exchange as it starts (on the I/O thread).
    pub fn count(&self) {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit == 0 {
            return;
        }
        let Some(link) = &self.link else {
            return;
        };
        if served == 1 {
            let _ = self.first_at.set(Instant::now());
        }
        if served == self.limit {
            self.accepting.send_replace(false);
            link.send(message::MAX_REQUESTS);
        } else if served >= RATE_SAMPLES.min(self.limit / 2).max(2)
            && served < self.limit
            && !self.successor_asked.load(Ordering::Relaxed)
            && self.limit_is_near(served)
        {
            self.successor_asked.store(true, Ordering::Relaxed);
            link.send(message::SOON);
        }
    }

    /// Whether, at the rate since the first exchange, the limit is less than `lead` away.
    fn limit_is_near(&self, served: u64) -> bool {
        let Some(first) = self.first_at.get() else {
            return false;
        };
        let intervals = served.saturating_sub(1).max(1);
        let per_exchange = first.elapsed() / u32::try_from(intervals).unwrap_or(u32::MAX);
        let left = self.limit - served;
        per_exchange.saturating_mul(u32::try_from(left).unwrap_or(u32::MAX)) <= self.lead
    }

    /// Accept again (SIGUSR2: no other worker can take new connections yet).
    pub fn resume(&self) {
        self.accepting.send_replace(true);
    }

    /// Watches whether accept loops may accept.
    pub fn accepting(&self) -> watch::Receiver<bool> {
        self.accepting.subscribe()
    }

    /// Exchanges started so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked(limit: u64, boot: Duration) -> (RequestBudget, std::os::fd::OwnedFd) {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("a pipe for the test");
        (
            RequestBudget::new(limit, Some(WorkerLink::new(write)), boot),
            read,
        )
    }

    fn messages(pipe: &std::os::fd::OwnedFd) -> Vec<u8> {
        let mut buf = [0u8; 64];
        match nix::unistd::read(pipe, &mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn the_limit_pauses_accepting_and_tells_the_supervisor_once() {
        let (budget, pipe) = linked(3, Duration::ZERO);
        let accepting = budget.accepting();
        budget.count();
        budget.count();
        assert!(*accepting.borrow());
        budget.count();
        assert!(!*accepting.borrow(), "paused at the limit");
        budget.count();
        let sent = messages(&pipe);
        assert_eq!(
            sent.iter().filter(|&&m| m == message::MAX_REQUESTS).count(),
            1
        );
        budget.resume();
        assert!(*accepting.borrow());
        assert_eq!(budget.served(), 4);
    }

    #[test]
    fn a_fast_worker_with_a_slow_boot_asks_for_its_successor_ahead() {
        // exchanges arrive back to back: with a 1 s boot the limit is always "near" once half
        // of it is served
        let (budget, pipe) = linked(100, Duration::from_secs(1));
        for _ in 0..7 {
            budget.count();
        }
        assert!(
            messages(&pipe).is_empty(),
            "not before the rate has samples"
        );
        budget.count();
        assert_eq!(messages(&pipe), vec![message::SOON]);
        for _ in 0..10 {
            budget.count();
        }
        assert!(messages(&pipe).is_empty(), "asked once");
    }

    #[test]
    fn a_slow_worker_with_a_fast_boot_waits_before_asking() {
        let (budget, pipe) = linked(10, Duration::ZERO);
        budget.count();
        std::thread::sleep(Duration::from_millis(30));
        for _ in 0..4 {
            budget.count();
        }
        // ~7.5 ms per exchange, 5 left: ~37 ms away, more than the 20 ms lead
        assert!(messages(&pipe).is_empty());
    }

    #[test]
    fn a_spare_starts_paused_until_resumed() {
        let (_read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("a pipe for the test");
        let budget = RequestBudget::new(0, Some(WorkerLink::new(write).standby()), Duration::ZERO);
        let accepting = budget.accepting();
        assert!(
            !*accepting.borrow(),
            "a spare accepts nothing before SIGUSR2"
        );
        budget.resume();
        assert!(*accepting.borrow());
    }

    #[test]
    fn without_a_supervisor_the_budget_only_counts() {
        let budget = RequestBudget::new(2, None, Duration::ZERO);
        let accepting = budget.accepting();
        for _ in 0..5 {
            budget.count();
        }
        assert!(*accepting.borrow());
        assert_eq!(budget.served(), 5);
    }
}
