//! Metrics: what each worker counts, and how the supervisor adds them up.
//!
//! Each worker counts into its own slot of a memory region shared with the supervisor (mapped
//! `MAP_SHARED` before any fork, so every process sees the same pages): relaxed atomic adds,
//! one writer per slot, nothing sent anywhere per request, and nothing the supervisor must ask
//! for when it is scraped. When a worker ends, the supervisor adds what its slot counted to
//! the totals of workers gone and gives the slot to the next worker: a counter never goes
//! backwards, and what a SIGKILLed worker counted up to its last instant is kept.
//!
//! The endpoint that serves the sums is [`endpoint`]; the text format is `prometheus-client`'s.

pub mod endpoint;
pub mod exposition;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Upper bounds (µs) of `wizgy_request_duration_seconds`' buckets: 0.5 ms to 10 s.
pub const DURATION_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
/// Upper bounds (µs) of `wizgy_app_queue_wait_seconds`' buckets: 50 µs to 1 s (a wait for an
/// app thread is usually a few µs; milliseconds mean the threads are all busy).
pub const QUEUE_WAIT_BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];
/// Room for the buckets of either histogram, +Inf included.
const BUCKETS: usize = 16;

/// Status classes of `wizgy_requests_total`: 1xx to 5xx, and `none` for an exchange that ended
/// before any response (the client left, the worker stopped).
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// A monotonic count.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A level that goes up and down (stored as u64, wrapping; read as i64).
#[derive(Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    const fn new() -> Self {
        Gauge(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed) as i64
    }
}

/// A histogram of durations: a count per bucket (not cumulative), the sum in µs, the count.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `micros` against `bounds` (past the last: +Inf).
    pub fn observe(&self, bounds: &[u64], micros: u64) {
        let index = bounds.partition_point(|&bound| bound < micros);
        self.buckets[index.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> HistogramValues {
        HistogramValues {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }

    fn clear(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }
}

/// One worker's counts. Only atomics, so all-zero memory is a valid, empty slot; aligned to a
/// cache line so two workers never write the same line.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Slot {
    /// By [`STATUS_CLASSES`].
    pub requests: [Counter; 6],
    pub duration: Histogram,
    pub queue_wait: Histogram,
    pub in_flight: Gauge,
    pub connections_open: Gauge,
    pub connections_accepted: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub static_hits: Counter,
    pub access_log_dropped: Counter,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            requests: [const { Counter::new() }; 6],
            duration: Histogram::new(),
            queue_wait: Histogram::new(),
            in_flight: Gauge::new(),
            connections_open: Gauge::new(),
            connections_accepted: Counter::new(),
            bytes_received: Counter::new(),
            bytes_sent: Counter::new(),
            static_hits: Counter::new(),
            access_log_dropped: Counter::new(),
        }
    }

    /// A copy of the counts.
    pub fn read(&self) -> Values {
        Values {
            requests: std::array::from_fn(|i| self.requests[i].get()),
            duration: self.duration.read(),
            queue_wait: self.queue_wait.read(),
            in_flight: self.in_flight.get(),
            connections_open: self.connections_open.get(),
            connections_accepted: self.connections_accepted.get(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            static_hits: self.static_hits.get(),
            access_log_dropped: self.access_log_dropped.get(),
        }
    }

    /// Zeroes the slot for a new worker (before it is forked).
    fn clear(&self) {
        for counter in &self.requests {
            counter.0.store(0, Ordering::Relaxed);
        }
        self.duration.clear();
        self.queue_wait.clear();
        for atomic in [
            &self.in_flight.0,
            &self.connections_open.0,
            &self.connections_accepted.0,
            &self.bytes_received.0,
            &self.bytes_sent.0,
            &self.static_hits.0,
            &self.access_log_dropped.0,
        ] {
            atomic.store(0, Ordering::Relaxed);
        }
    }

    /// The class index of a status for [`Slot::requests`].
    fn class(status: u16) -> usize {
        match status {
            100..=599 => usize::from(status / 100),
            _ => 0,
        }
    }

    /// Counts a request that was answered without an exchange (a refused head).
    pub fn refused(&self, status: u16) {
        self.requests[Slot::class(status)].add(1);
    }
}

/// A histogram's counts, copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramValues {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
    pub count: u64,
}

impl HistogramValues {
    fn add(&mut self, other: &HistogramValues) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
        self.count += other.count;
    }
}

/// A slot's counts, copied (and sums of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Values {
    pub requests: [u64; 6],
    pub duration: HistogramValues,
    pub queue_wait: HistogramValues,
    pub in_flight: i64,
    pub connections_open: i64,
    pub connections_accepted: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub static_hits: u64,
    pub access_log_dropped: u64,
}

impl Values {
    /// Adds `other`'s counters and histograms; with `gauges`, its levels too (a worker that is
    /// gone has none left).
    pub fn add(&mut self, other: &Values, gauges: bool) {
        for (mine, theirs) in self.requests.iter_mut().zip(other.requests) {
            *mine += theirs;
        }
        self.duration.add(&other.duration);
        self.queue_wait.add(&other.queue_wait);
        self.connections_accepted += other.connections_accepted;
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        self.static_hits += other.static_hits;
        self.access_log_dropped += other.access_log_dropped;
        if gauges {
            self.in_flight += other.in_flight;
            self.connections_open += other.connections_open;
        }
    }
}

/// The shared slots, mapped once by the supervisor and never unmapped (each process's view
/// lives as long as the process).
pub struct Region {
    slots: &'static [Slot],
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Region({} slots)", self.slots.len())
    }
}

impl Region {
    /// Maps `count` zeroed slots shared with every process forked after this.
    pub fn map(count: usize) -> std::io::Result<Region> {
        use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
        let bytes = std::mem::size_of::<Slot>()
            .checked_mul(count.max(1))
            .and_then(std::num::NonZeroUsize::new)
            .ok_or_else(|| std::io::Error::other("metrics region too large"))?;
        // SAFETY: a fresh anonymous mapping: no other memory is affected. MAP_SHARED keeps the
        // pages shared with the children forked later, which is the point.
        #[allow(unsafe_code)]
        let pointer = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        // SAFETY: the mapping is `count * size_of::<Slot>()` bytes, page-aligned (so aligned for
        // Slot), zero-filled (an all-zero Slot is valid: it holds only atomics), and never
        // unmapped, so the 'static slice stays valid. All access goes through atomics, so other
        // processes writing the same pages concurrently is sound.
        #[allow(unsafe_code)]
        let slots = unsafe { std::slice::from_raw_parts(pointer.cast::<Slot>().as_ptr(), count) };
        Ok(Region { slots })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slot `index`'s counts.
    pub fn read(&self, index: usize) -> Values {
        self.slots[index].read()
    }

    /// Zeroes slot `index` for a worker about to be forked.
    pub fn clear(&self, index: usize) {
        self.slots[index].clear();
    }

    /// Slot `index`, for the worker given it (see [`attach`]).
    pub fn slot(&self, index: usize) -> &'static Slot {
        &self.slots[index]
    }
}

/// Counts of a process with no slot (metrics off, or `serve()` without a supervisor): counted
/// and never read.
static UNCOUNTED: Slot = Slot::new();
/// This worker's slot, once given.
static ATTACHED: OnceLock<&'static Slot> = OnceLock::new();

/// Makes `slot` this process's (a worker, right after its fork).
pub fn attach(slot: &'static Slot) {
    let _ = ATTACHED.set(slot);
}

/// This process's slot.
pub fn slot() -> &'static Slot {
    ATTACHED.get().copied().unwrap_or(&UNCOUNTED)
}

/// Whether this process's counts are read by anyone (durations are timed only then).
pub fn is_enabled() -> bool {
    ATTACHED.get().is_some()
}

/// One exchange in flight: counted in `wizgy_requests_in_flight` until [`Flight::finish`]
/// (or drop: an exchange cut short is counted with no status).
#[derive(Debug)]
pub struct Flight {
    started: Option<Instant>,
    done: bool,
}

impl Flight {
    pub fn start() -> Flight {
        let slot = slot();
        slot.in_flight.inc();
        Flight {
            started: is_enabled().then(Instant::now),
            done: false,
        }
    }

    /// The exchange ended with `status` (0: no response was sent).
    pub fn finish(&mut self, status: u16) {
        if self.done {
            return;
        }
        self.done = true;
        let slot = slot();
        slot.in_flight.dec();
        slot.requests[Slot::class(status)].add(1);
        if let Some(started) = self.started {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            slot.duration.observe(&DURATION_BOUNDS_US, micros);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.finish(0);
    }
}

/// One open connection: counted in `wizgy_connections_open` while it lives.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    pub fn new() -> Self {
        let slot = slot();
        slot.connections_accepted.add(1);
        slot.connections_open.inc();
        OpenConnection(())
    }
}

impl Default for OpenConnection {
    fn default() -> Self {
        OpenConnection::new()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        slot().connections_open.dec();
    }
}

/// How long an exchange waited for an app thread (`wizgy_app_queue_wait_seconds`).
pub fn queue_waited(wait: Duration) {
    let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
    slot().queue_wait.observe(&QUEUE_WAIT_BOUNDS_US, micros);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_sum() {
        let histogram = Histogram::new();
        histogram.observe(&DURATION_BOUNDS_US, 500);
        histogram.observe(&DURATION_BOUNDS_US, 501);
        histogram.observe(&DURATION_BOUNDS_US, 20_000_000);
        let values = histogram.read();
        assert_eq!(values.buckets[0], 1, "500 µs is within the 0.5 ms bucket");
        assert_eq!(values.buckets[1], 1);
        assert_eq!(values.buckets[DURATION_BOUNDS_US.len()], 1, "+Inf");
        assert_eq!(values.count, 3);
        assert_eq!(values.sum_us, 20_001_001);
    }

    #[test]
    fn a_shared_slot_is_seen_by_a_forked_child_and_survives_it() {
        let region = Region::map(2).expect("a shared mapping");
        region.clear(1);
        // SAFETY: the child only touches the shared slot and exits at once.
        #[allow(unsafe_code)]
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                region.slot(1).requests[2].add(5);
                region.slot(1).in_flight.inc();
                // SAFETY: _exit ends the forked child without the parent's atexit handlers
                // or buffered output, which another test thread may hold locked.
                #[allow(unsafe_code)]
                unsafe {
                    libc::_exit(0)
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).expect("the child ends");
            }
        }
        let values = region.read(1);
        assert_eq!(values.requests[2], 5);
        assert_eq!(values.in_flight, 1);
        let mut retired = Values::default();
        retired.add(&values, false);
        assert_eq!(retired.requests[2], 5);
        assert_eq!(retired.in_flight, 0, "a gone worker has nothing in flight");
        assert_eq!(region.read(0), Values::default());
    }

    #[test]
    fn a_flight_dropped_unfinished_counts_as_no_response() {
        let before = slot().read();
        drop(Flight::start());
        let mut finished = Flight::start();
        finished.finish(404);
        let after = slot().read();
        assert_eq!(after.requests[0] - before.requests[0], 1);
        assert_eq!(after.requests[4] - before.requests[4], 1);
    }
}
