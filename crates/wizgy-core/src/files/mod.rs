//! Static files: `--static PREFIX=DIR` mounts, served by the I/O thread without Python.
//!
//! Layout: [`resolve`] (URL path to an open file, never outside DIR), [`range`] (the Range
//! field), [`conditional`] (If-* preconditions), [`serve`] (the response for a request). This
//! module owns the mount table and the one lookup an app request pays for it; the connection
//! writes the reply (sendfile), logs it and counts it like any exchange.

pub mod conditional;
pub mod range;
pub mod resolve;
pub mod serve;

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use serve::{FileBody, Reply};

use resolve::Opener;

/// One `--static PREFIX=DIR`: a URL prefix and an open handle on its directory.
#[derive(Debug, Clone)]
pub struct StaticMount {
    /// The URL prefix without its trailing `/` (`""` for `/`): matches the path itself and
    /// anything under `prefix/`.
    prefix: String,
    /// DIR, absolute, for the routing table.
    pub dir: PathBuf,
    /// DIR, opened at start: files are opened relative to it, so renaming or replacing DIR's
    /// path later changes nothing, and each worker inherits the same directory.
    root: Arc<OwnedFd>,
    /// Siblings seen beside its files (each worker's table starts with its own).
    siblings: Arc<serve::SiblingCache>,
}

impl StaticMount {
    /// Parses `PREFIX=DIR` and opens DIR (relative to the directory wizgy starts in).
    pub fn parse(text: &str) -> Result<StaticMount, String> {
        let (prefix, dir) = crate::config::parse_prefixed(text, "DIR")?;
        let path = PathBuf::from(&dir);
        let file = std::fs::File::open(&path).map_err(|e| format!("{dir}: {e}"))?;
        let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
        if !is_dir {
            return Err(format!("{dir}: not a directory"));
        }
        let dir = std::path::absolute(&path).unwrap_or(path);
        Ok(StaticMount {
            prefix,
            dir,
            root: Arc::new(OwnedFd::from(file)),
            siblings: Arc::default(),
        })
    }

    /// The URL prefix as given (`/` for the root).
    pub fn prefix(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }

    /// The rest of `path` if it is under this mount, on a segment boundary: `/static` takes
    /// `/static` and `/static/x`, never `/staticx`.
    fn rest_of<'p>(&self, path: &'p [u8]) -> Option<&'p [u8]> {
        let rest = path.strip_prefix(self.prefix.as_bytes())?;
        (rest.is_empty() || rest[0] == b'/').then_some(rest)
    }
}

/// The static mounts of a worker, longest prefix first, and how they answer.
#[derive(Debug)]
pub struct StaticFiles {
    mounts: Vec<StaticMount>,
    /// `--static-max-age`: `Cache-Control: public, max-age=N` on every file response.
    max_age: Option<Duration>,
    opener: Opener,
}

impl StaticFiles {
    /// The table for `mounts`; the resolver (`openat2` or the checked walk) is chosen here,
    /// once.
    pub fn new(mounts: &[StaticMount], max_age: Option<Duration>) -> StaticFiles {
        let mut mounts = mounts.to_vec();
        for mount in &mut mounts {
            mount.siblings = Arc::default();
        }
        // Longest prefix first: the first match is the longest (--static /a and /a/b).
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        let opener = mounts
            .first()
            .map_or(Opener::Openat2, |m| Opener::probe(m.root.as_fd()));
        if opener == Opener::Walk {
            tracing::info!("openat2 unavailable: static files resolved by the checked walk");
        }
        StaticFiles {
            mounts,
            max_age,
            opener,
        }
    }

    /// No mounts: every request goes to the app.
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// The mount `path` falls under, and the rest of the path: a comparison per mount, no
    /// system call (an app request pays only this).
    pub fn lookup<'p>(&self, path: &'p [u8]) -> Option<(&StaticMount, &'p [u8])> {
        self.mounts
            .iter()
            .find_map(|mount| mount.rest_of(path).map(|rest| (mount, rest)))
    }

    /// The routing table's lines, longest prefix first, for the start-up log.
    pub fn routes(&self) -> impl Iterator<Item = String> + '_ {
        self.mounts
            .iter()
            .map(|m| format!("{} -> static files in {}", m.prefix(), m.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(prefix: &str) -> StaticMount {
        StaticMount::parse(&format!("{prefix}={}", std::env::temp_dir().display())).expect("valid")
    }

    #[test]
    fn the_longest_prefix_wins_on_segment_boundaries() {
        let files = StaticFiles::new(&[mount("/"), mount("/static"), mount("/static/img/")], None);
        let table: &[(&str, Option<(&str, &str)>)] = &[
            ("/static/a.css", Some(("/static", "/a.css"))),
            ("/static", Some(("/static", ""))),
            ("/static/", Some(("/static", "/"))),
            ("/static/img/x.png", Some(("/static/img", "/x.png"))),
            ("/static/imgx", Some(("/static", "/imgx"))),
            ("/staticx", Some(("/", "/staticx"))),
            ("/", Some(("/", "/"))),
        ];
        for &(path, want) in table {
            let got = files
                .lookup(path.as_bytes())
                .map(|(m, rest)| (m.prefix(), std::str::from_utf8(rest).expect("utf-8")));
            assert_eq!(got, want, "{path}");
        }
        let files = StaticFiles::new(&[mount("/static")], None);
        assert!(files.lookup(b"/staticx").is_none());
        assert!(files.lookup(b"/app").is_none());
    }

    #[test]
    fn bad_mounts_are_refused_with_a_reason() {
        let file = std::env::temp_dir().join(format!("wizgy-mount-file-{}", std::process::id()));
        std::fs::write(&file, "x").expect("write");
        for (text, says) in [
            ("/x", "PREFIX=DIR"),
            ("x=/tmp", "start with '/'"),
            ("/x=", "PREFIX=DIR"),
            ("/x=/no/such/dir", "No such file"),
            (&format!("/x={}", file.display())[..], "not a directory"),
        ] {
            let error = StaticMount::parse(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
        let _ = std::fs::remove_file(file);
    }
}
