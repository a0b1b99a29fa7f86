//! Running the app on the I/O thread itself (`--inline auto`, issue 17).
//!
//! A request handed to an app thread pays a hand-off: the I/O thread queues it and may wake
//! the thread, the app thread sends the response back and the I/O thread is woken in turn
//! (futex wakes, context switches, the GIL changing hands). For a route that answers in
//! microseconds that is most of what wizgy adds to the app's own cost. Such a route is run
//! right where its request was parsed, on the I/O thread, while no app thread is busy.
//!
//! What keeps this safe: the I/O thread must never block, or every other connection of the
//! worker waits. So a route runs inline only after it has shown, on the app threads, that it
//! answers fast ([`FAST`], [`LEARN`] calls in a row), and only when the request's body is
//! already read (the app cannot wait for the socket it would be reading from). A call that
//! turns out slow, or a response too big to hold ([`BIG`]), sends its route back to the app
//! threads, for [`BACKOFF`] doubling with each demotion. A blocking app therefore stalls the
//! loop at most once per demotion of a route, for one call; a sleeping route never runs here.
//!
//! Routes are told apart by method and path, with every segment holding a digit folded into
//! one (`/users/12` and `/users/7` are one route), in a fixed table: unbounded paths cost no
//! memory, and two routes that share a slot share an estimate (which can only send the fast
//! one to the app threads, never the slow one inline).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wizgy_core::http1::RequestHead;

/// Slots of the route table (a power of two).
const SLOTS: usize = 1024;
/// Calls in a row that must be fast on the app threads before a route runs inline.
const LEARN: u64 = 16;
/// A call (the app and the draining of its result) at least this long is not fast.
pub const FAST: Duration = Duration::from_millis(1);
/// Response bytes past which an inline call's route goes back to the app threads: inline, the
/// response is held whole (the link cannot make the I/O thread wait for room).
pub const BIG: usize = 256 * 1024;
/// How long a demoted route stays on the app threads the first time; doubled with each later
/// demotion of the same slot, up to 2^10 times.
const BACKOFF: Duration = Duration::from_secs(10);

/// A slot: bits 0-7 the streak of fast calls, 8-15 the demotions, 16-63 the time (ms after
/// the table's epoch) before which the route may not run inline again.
#[derive(Debug)]
pub struct Routes {
    slots: Box<[AtomicU64]>,
    epoch: Instant,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        }
    }
}

const STREAK: u64 = 0xff;
const DEMOTIONS_SHIFT: u32 = 8;
const UNTIL_SHIFT: u32 = 16;

impl Routes {
    /// The slot of the route `head` asks for.
    pub fn key(head: &RequestHead) -> usize {
        let (path, _) = head.path_and_query();
        // FNV-1a over the method, then the path with each segment that holds a digit folded.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |byte: u8| {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        };
        head.method().iter().for_each(|&b| eat(b));
        eat(b' ');
        for segment in path.split(|&b| b == b'/') {
            eat(b'/');
            if segment.iter().any(u8::is_ascii_digit) {
                eat(b'#');
            } else {
                segment.iter().for_each(|&b| eat(b));
            }
        }
        (hash ^ (hash >> 32)) as usize & (SLOTS - 1)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the route in `slot` may run inline now.
    pub fn ready(&self, slot: usize) -> bool {
        let word = self.slots[slot].load(Ordering::Relaxed);
        word & STREAK >= LEARN && self.now_ms() >= word >> UNTIL_SHIFT
    }

    /// Records a call of the route in `slot` on an app thread that took `took`.
    pub fn learned(&self, slot: usize, took: Duration) {
        let fast = took < FAST;
        let _ = self.slots[slot].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let streak = word & STREAK;
            let next = if fast { (streak + 1).min(LEARN) } else { 0 };
            (next != streak).then_some(word & !STREAK | next)
        });
    }

    /// Sends the route in `slot` back to the app threads: it must learn again, and not before
    /// its backoff has passed.
    pub fn demote(&self, slot: usize) {
        let now = self.now_ms();
        let _ = self.slots[slot].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let demotions = (word >> DEMOTIONS_SHIFT) & 0xff;
            let backoff = BACKOFF.as_millis() as u64 * (1 << demotions.min(10));
            let demotions = (demotions + 1).min(0xff);
            Some(((now + backoff) << UNTIL_SHIFT) | (demotions << DEMOTIONS_SHIFT))
        });
    }
}

thread_local! {
    static ATTACHED: Cell<bool> = const { Cell::new(false) };
}

/// Gives the calling thread (the I/O thread) a Python thread state that lives as long as the
/// thread, as the app threads have: `threading.local` data survives between inline calls, and
/// each call only takes the GIL instead of creating and destroying a thread state (which is
/// what attaching a thread that has none costs). Returns true the first time.
pub fn keep_thread_state() -> bool {
    ATTACHED.with(|attached| {
        if attached.get() {
            return false;
        }
        // SAFETY: the interpreter is initialized (this process runs the app), and this thread
        // holds no GIL here (the I/O thread never does outside an inline call). Ensure makes the
        // thread state and takes the GIL; SaveThread gives the GIL back and keeps the state,
        // with its use count at 1, so that later `Python::attach` calls on this thread restore
        // it instead of making a new one, and never destroy it.
        #[allow(unsafe_code)]
        unsafe {
            let _ = pyo3::ffi::PyGILState_Ensure();
            pyo3::ffi::PyEval_SaveThread();
        }
        attached.set(true);
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wizgy_core::http1::{HeadParser, Limits};

    fn head(text: &str) -> RequestHead {
        let raw = format!("{text} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = bytes::BytesMut::from(raw.as_bytes());
        let parser = HeadParser::new(Limits::default()).parse(&mut buf);
        parser.expect("a valid head").expect("a whole head")
    }

    #[test]
    fn routes_fold_segments_with_digits_and_keep_methods_apart() {
        let key = |t: &str| Routes::key(&head(t));
        assert_eq!(key("GET /users/12/posts"), key("GET /users/7/posts"));
        assert_eq!(key("GET /a?x=1"), key("GET /a?y=2"));
        assert_ne!(key("GET /users/12"), key("POST /users/12"));
        assert_ne!(key("GET /hello"), key("GET /sleep"));
    }

    #[test]
    fn a_route_runs_inline_after_a_streak_of_fast_calls_and_a_slow_one_resets_it() {
        let routes = Routes::default();
        let fast = Duration::from_micros(50);
        for _ in 0..LEARN - 1 {
            routes.learned(3, fast);
        }
        assert!(!routes.ready(3));
        routes.learned(3, FAST);
        assert!(!routes.ready(3), "a slow call must restart the streak");
        for _ in 0..LEARN {
            routes.learned(3, fast);
        }
        assert!(routes.ready(3));
        assert!(!routes.ready(4));
    }

    #[test]
    fn a_demoted_route_waits_out_its_backoff_even_after_a_new_streak() {
        let routes = Routes::default();
        for _ in 0..LEARN {
            routes.learned(9, Duration::ZERO);
        }
        routes.demote(9);
        assert!(!routes.ready(9));
        for _ in 0..LEARN {
            routes.learned(9, Duration::ZERO);
        }
        assert!(!routes.ready(9), "promoted inside its backoff");
        let word = routes.slots[9].load(Ordering::Relaxed);
        assert_eq!((word >> DEMOTIONS_SHIFT) & 0xff, 1);
        assert!(word >> UNTIL_SHIFT >= BACKOFF.as_millis() as u64);
        routes.demote(9);
        let word = routes.slots[9].load(Ordering::Relaxed);
        assert!(
            word >> UNTIL_SHIFT >= 2 * BACKOFF.as_millis() as u64,
            "no doubling"
        );
    }
}
