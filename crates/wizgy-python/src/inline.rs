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
//! answers fast (a score of [`LEARN`]: each call under [`FAST`] adds one, each slower call
//! halves it), and only when the request's body is
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
/// The score of fast calls on the app threads a route needs before it runs inline: a fast call
/// adds one, a slow one halves it. Halved, not reset: on the app threads a fast call can
/// measure slow for no fault of its own, waiting for the GIL while another app thread runs
/// (measured: 1-6 ms waits for a 50 µs route with a deep queue, which never learned when one
/// slow call reset it). A route slow in more than about one call in ten never scores 16.
const LEARN: u64 = 16;
/// A call (the app and the draining of its result) at least this long is not fast.
pub const FAST: Duration = Duration::from_millis(1);
/// Response bytes past which an inline call's route goes back to the app threads: inline, the
/// response is held whole (the link cannot make the I/O thread wait for room).
pub const BIG: usize = 256 * 1024;
/// How long no call runs inline after one waited [`FAST`] or longer for the GIL: a thread the
/// pool does not know of (the app's own) runs Python, and every inline call would wait for it.
pub const GIL_TAKEN_BACKOFF: Duration = Duration::from_secs(1);
/// How long a demoted route stays on the app threads the first time; doubled with each later
/// demotion of the same slot, up to 2^10 times.
const BACKOFF: Duration = Duration::from_secs(10);

/// A slot: bits 0-6 the score of fast calls, bit 7 [`SUSPECT`], 8-15 the demotions, 16-63 the
/// time (ms after the table's epoch) before which the route may not run inline again.
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

const STREAK: u64 = 0x7f;
/// The route's last inline call was slow: its next call goes to the app threads, and is
/// demoted only if it is slow there too. A slow inline call may be the I/O thread's fault,
/// preempted on a busy machine (measured: 1-5 ms inline calls of a 50 µs route beside a busy
/// client, which left it demoted for good); a blocking route is slow on both, and has stalled
/// the loop for one call, as before.
const SUSPECT: u64 = 0x80;
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
        let until = word >> UNTIL_SHIFT;
        // Never demoted (until 0): no clock read, on every request's path.
        word & STREAK >= LEARN && word & SUSPECT == 0 && (until == 0 || self.now_ms() >= until)
    }

    /// Marks the route in `slot` [`SUSPECT`]: an inline call of it was slow.
    pub fn suspect(&self, slot: usize) {
        self.slots[slot].fetch_or(SUSPECT, Ordering::Relaxed);
    }

    /// Records a call of the route in `slot` on an app thread that took `took`.
    pub fn learned(&self, slot: usize, took: Duration) {
        let fast = took < FAST;
        if self.slots[slot].load(Ordering::Relaxed) & SUSPECT != 0 {
            if fast {
                self.slots[slot].fetch_and(!SUSPECT, Ordering::Relaxed);
            } else {
                self.demote(slot);
            }
            return;
        }
        let _ = self.slots[slot].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let streak = word & STREAK;
            let next = if fast {
                (streak + 1).min(LEARN)
            } else {
                streak / 2
            };
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

/// The time a call on an app thread is judged by. Its wall time if under [`FAST`]; otherwise
/// the CPU time the thread spent on it, if the thread never blocked meanwhile (no voluntary
/// switch): then it was only preempted, by the I/O thread or another program on its core,
/// which on the I/O thread it would not have been (measured: flask at 64 connections on one
/// core, 70 µs calls that measured over 1 ms in wall time more than one time in ten, and never
/// learned). A call that blocked (sleep, a socket, the GIL taken by another thread while it
/// let it go for I/O) is judged by its wall time.
pub struct Judge {
    started: Instant,
    usage: Option<nix::sys::resource::Usage>,
}

impl Judge {
    pub fn start() -> Judge {
        use nix::sys::resource::{getrusage, UsageWho};
        Judge {
            started: Instant::now(),
            usage: getrusage(UsageWho::RUSAGE_THREAD).ok(),
        }
    }

    pub fn took(&self) -> Duration {
        use nix::sys::resource::{getrusage, Usage, UsageWho};
        let wall = self.started.elapsed();
        if wall < FAST {
            return wall;
        }
        let cpu = |u: &Usage| {
            let (user, system) = (u.user_time(), u.system_time());
            let micros = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
            micros(user) + micros(system)
        };
        match (&self.usage, getrusage(UsageWho::RUSAGE_THREAD).ok()) {
            (Some(before), Some(after))
                if after.voluntary_context_switches() == before.voluntary_context_switches() =>
            {
                Duration::from_micros(cpu(&after).saturating_sub(cpu(before)).max(0) as u64)
            }
            _ => wall,
        }
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

    /// A full score of fast calls for the route in `slot`.
    fn learn(routes: &Routes, slot: usize) {
        for _ in 0..LEARN {
            routes.learned(slot, Duration::ZERO);
        }
    }

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
    fn a_route_runs_inline_after_a_score_of_fast_calls_and_a_slow_one_halves_it() {
        let routes = Routes::default();
        let fast = Duration::from_micros(50);
        for _ in 0..LEARN - 1 {
            routes.learned(3, fast);
        }
        assert!(!routes.ready(3));
        routes.learned(3, FAST);
        assert!(!routes.ready(3), "a slow call must cost the score");
        for _ in 0..LEARN / 2 {
            routes.learned(3, fast);
        }
        assert!(!routes.ready(3), "halved, 7, plus 8 is not 16");
        routes.learned(3, fast);
        assert!(routes.ready(3));
        assert!(!routes.ready(4));
        // Slow one call in four: the score never reaches LEARN.
        let slow = Routes::default();
        for call in 0..400 {
            slow.learned(5, if call % 4 == 3 { FAST } else { fast });
            assert!(!slow.ready(5), "ready after {call} calls");
        }
    }

    #[test]
    fn a_slow_inline_call_is_judged_again_on_the_app_threads() {
        let routes = Routes::default();
        learn(&routes, 2);
        routes.suspect(2);
        assert!(
            !routes.ready(2),
            "the next call of a suspect goes to the app threads"
        );
        routes.learned(2, Duration::from_micros(80));
        assert!(
            routes.ready(2),
            "fast there: the slow inline call was not the route's"
        );
        routes.suspect(2);
        routes.learned(2, FAST);
        assert!(!routes.ready(2));
        learn(&routes, 2);
        assert!(
            !routes.ready(2),
            "slow on the app threads too: demoted, with its backoff"
        );
    }

    #[test]
    fn a_demoted_route_waits_out_its_backoff_even_after_a_new_streak() {
        let routes = Routes::default();
        learn(&routes, 9);
        routes.demote(9);
        assert!(!routes.ready(9));
        learn(&routes, 9);
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
