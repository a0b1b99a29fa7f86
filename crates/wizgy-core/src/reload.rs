//! `--reload`: noticing changed `.py` files with inotify, read from the supervisor's poll loop.
//!
//! inotify directly (through nix), not the notify crate: notify runs a background thread, and
//! the supervisor must have no threads when it forks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Directories under a watched root that are never watched.
const SKIPPED: [&str; 6] = [
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "node_modules",
    "target",
];
/// At most this many directories are watched (each costs a kernel watch).
const MAX_DIRS: usize = 4096;
/// Changes are reported once the files have been quiet this long (editors write in bursts).
const SETTLE: Duration = Duration::from_millis(300);

/// Watches directory trees for changed Python files.
pub struct Watcher {
    inotify: Inotify,
    /// When the last relevant change arrived, until it is reported.
    changed_at: Option<Instant>,
}

impl Watcher {
    pub fn new(roots: &[PathBuf]) -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut watcher = Watcher {
            inotify,
            changed_at: None,
        };
        let mut count = 0;
        for root in roots {
            watcher.watch_tree(root, &mut count);
        }
        tracing::info!("--reload: watching {count} directories for .py changes");
        Ok(watcher)
    }

    fn watch_tree(&mut self, dir: &Path, count: &mut usize) {
        if *count >= MAX_DIRS {
            return;
        }
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE;
        if self.inotify.add_watch(dir, flags).is_err() {
            return;
        }
        *count += 1;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let name = entry.file_name();
            if is_dir
                && !SKIPPED.iter().any(|s| name == *s)
                && !name.to_string_lossy().starts_with('.')
            {
                self.watch_tree(&entry.path(), count);
            }
        }
    }

    /// The descriptor to poll.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Reads pending events; true once a `.py` change has settled.
    pub fn changed(&mut self) -> bool {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            let relevant = events.iter().any(|event| {
                event
                    .name
                    .as_ref()
                    .is_some_and(|name| name.to_string_lossy().ends_with(".py"))
            });
            if relevant {
                self.changed_at = Some(Instant::now());
            }
        }
        match self.changed_at {
            Some(at) if at.elapsed() >= SETTLE => {
                self.changed_at = None;
                true
            }
            _ => false,
        }
    }
}
