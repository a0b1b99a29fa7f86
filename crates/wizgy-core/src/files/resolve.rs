//! From the URL path under a static mount to an open file beneath the mount's directory.
//!
//! THE INVARIANT: nothing outside the mount's directory (DIR) is ever opened. Two layers hold
//! it, each on its own:
//! 1. [`relative_path`] turns the URL path into a relative path that can only name something
//!    beneath DIR when read literally: each segment is percent-decoded once and refused if it
//!    is `.` or `..`, empty, hidden (starts with `.`, except a first `.well-known`), holds a
//!    `/`, `\`, NUL or other control byte after decoding, or if the whole is not UTF-8 (which
//!    refuses overlong encodings of `.` and `/`).
//! 2. [`open_beneath`] opens that path relative to DIR's directory handle so that the kernel
//!    refuses any escape while it resolves, symlinks included (`openat2` with
//!    `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`), with no window between a check and the open.
//!    Where the kernel has no `openat2` (before Linux 5.6, or a seccomp filter that hides it),
//!    a checked walk does the same one component at a time: `openat(O_NOFOLLOW)` per
//!    component from the last directory handle, a symlink read and its target walked the same
//!    way, `..` taken from the walk's own stack of handles (never the file system's), so it
//!    cannot climb above DIR either; absolute symlinks are refused, as RESOLVE_BENEATH does.
//!
//! Whether the open file may be served (regular file, directory index) is serve.rs's business.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A URL path under a mount, made safe to open beneath its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativePath {
    /// Decoded segments joined by `/`, no leading or trailing `/`; empty for DIR itself.
    pub path: String,
    /// The URL ended in `/` (or was the mount's prefix itself, `PREFIX/`): a directory asked for.
    pub trailing_slash: bool,
}

/// The longest path accepted (Linux's PATH_MAX); longer is not a file.
const MAX_PATH: usize = 4096;

/// Decodes the URL path after a mount's prefix (`rest`: empty, or starting with `/`) into a
/// relative path, or `None` if it could name anything but a plain entry beneath DIR (see
/// the invariant above).
pub fn relative_path(rest: &[u8]) -> Option<RelativePath> {
    if rest.is_empty() {
        return Some(RelativePath {
            path: String::new(),
            trailing_slash: false,
        });
    }
    let rest = rest.strip_prefix(b"/")?;
    let (body, trailing_slash) = match rest.strip_suffix(b"/") {
        Some(body) => (body, true),
        None => (rest, rest.is_empty()),
    };
    let mut decoded = Vec::with_capacity(body.len());
    if !body.is_empty() {
        for (index, segment) in body.split(|&b| b == b'/').enumerate() {
            if index > 0 {
                decoded.push(b'/');
            }
            let name_start = decoded.len();
            percent_decode_into(segment, &mut decoded)?;
            let name = &decoded[name_start..];
            let hidden = name.first() == Some(&b'.');
            let well_known = index == 0 && name == b".well-known";
            if name.is_empty()
                || (hidden && !well_known)
                || name
                    .iter()
                    .any(|&b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
            {
                return None;
            }
        }
    }
    if decoded.len() > MAX_PATH {
        return None;
    }
    // Valid UTF-8 only: refuses overlong forms (%c0%ae is an overlong '.', %c0%af a '/').
    let path = String::from_utf8(decoded).ok()?;
    Some(RelativePath {
        path,
        trailing_slash,
    })
}

/// Appends `segment` percent-decoded once (RFC 3986 §2.1); `None` for a malformed escape.
fn percent_decode_into(segment: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut bytes = segment.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = hex(*bytes.next()?)?;
            let lo = hex(*bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// How files are opened beneath a mount's directory, chosen once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (Linux 5.6+).
    Openat2,
    /// The checked component-by-component walk.
    Walk,
}

impl Opener {
    /// `Openat2` if the kernel (and any seccomp filter) lets this process call it on `dir`.
    pub fn probe(dir: BorrowedFd<'_>) -> Opener {
        match rustix::fs::openat2(dir, ".", flags(), Mode::empty(), resolve_flags()) {
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => Opener::Walk,
            _ => Opener::Openat2,
        }
    }
}

/// Read-only; never blocks on a FIFO or device; never becomes a controlling terminal.
fn flags() -> OFlags {
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// Opens `path` (from [`relative_path`]; empty for DIR itself) beneath the directory `root`.
/// An escape is an error (`EXDEV` or `ELOOP`), like a missing file.
pub fn open_beneath(root: BorrowedFd<'_>, path: &str, opener: Opener) -> io::Result<File> {
    let path = if path.is_empty() { "." } else { path };
    let fd = match opener {
        Opener::Openat2 => {
            rustix::fs::openat2(root, path, flags(), Mode::empty(), resolve_flags())?
        }
        Opener::Walk => walk(root, path)?,
    };
    Ok(File::from(fd))
}

/// Symlinks followed in one walk at most (Linux's own limit, MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// The checked walk (see the invariant at the top).
fn walk(root: BorrowedFd<'_>, path: &str) -> io::Result<OwnedFd> {
    let escape = || io::Error::from_raw_os_error(libc::EXDEV);
    // Directories entered beneath `root`; empty: at `root` itself.
    let mut entered: Vec<OwnedFd> = Vec::new();
    // Components still to walk, last first.
    let mut pending: Vec<Vec<u8>> = path
        .split('/')
        .rev()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let mut symlinks = 0usize;
    while let Some(name) = pending.pop() {
        match &name[..] {
            b"" | b"." => continue,
            b".." => {
                // Up from the walk's own stack: at `root`, that is an escape.
                entered.pop().ok_or_else(escape)?;
                continue;
            }
            _ => {}
        }
        let dir = entered.last().map_or(root, |fd| fd.as_fd());
        match rustix::fs::openat(dir, &name[..], flags() | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => {
                if pending.is_empty() {
                    return Ok(fd);
                }
                // Not a directory: the next openat fails with ENOTDIR.
                entered.push(fd);
            }
            Err(rustix::io::Errno::LOOP) => {
                symlinks += 1;
                if symlinks > MAX_SYMLINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(dir, &name[..], Vec::new())?;
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    return Err(escape());
                }
                pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
            }
            Err(error) => return Err(error.into()),
        }
    }
    // The path ended in a directory reached by `..` or `.`: that directory itself.
    let dir = entered.last().map_or(root, |fd| fd.as_fd());
    Ok(rustix::fs::openat(dir, ".", flags(), Mode::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    fn rel(path: &str, trailing_slash: bool) -> Option<RelativePath> {
        Some(RelativePath {
            path: path.to_owned(),
            trailing_slash,
        })
    }

    #[test]
    fn hostile_url_paths_never_become_a_path_out_of_the_mount() {
        // (the URL path after the mount's prefix, what it may open)
        let table: &[(&[u8], Option<RelativePath>)] = &[
            (b"", rel("", false)),
            (b"/", rel("", true)),
            (b"/a.css", rel("a.css", false)),
            (b"/sub/", rel("sub", true)),
            (b"/sub/x%20y.txt", rel("sub/x y.txt", false)),
            (b"/caf%C3%A9", rel("caf\u{e9}", false)),
            (b"/.well-known/acme", rel(".well-known/acme", false)),
            (b"/a..b", rel("a..b", false)),
            (b"/..", None),
            (b"/../etc/passwd", None),
            (b"/a/../../etc/passwd", None),
            (b"/a/..", None),
            (b"/.", None),
            (b"/./a", None),
            (b"/%2e%2e/etc/passwd", None),
            (b"/%2E%2E/etc/passwd", None),
            (b"/.%2e/x", None),
            (b"/%2e/x", None),
            (b"/a%2f..%2f..%2fetc%2fpasswd", None),
            (b"/a%2F..%2F..%2Fetc", None),
            (b"/..%5c..%5cetc", None),
            (b"/a\\..\\..\\etc", None),
            (b"/a%5cb", None),
            (b"/a%00.html", None),
            (b"/a\0b", None),
            (b"/a%0ab", None),
            (b"/a%7f", None),
            (b"/%c0%ae%c0%ae/etc/passwd", None),
            (b"/%c0%af", None),
            (b"/%e0%80%ae", None),
            (b"/%ff", None),
            (b"/%", None),
            (b"/%2", None),
            (b"/%zz", None),
            (b"/%252e%252e/x", rel("%2e%2e/x", false)),
            (b"//etc/passwd", None),
            (b"/a//b", None),
            (b"/.git/config", None),
            (b"/.env", None),
            (b"/sub/.htaccess", None),
            (b"/%2egit/config", None),
            (b"/sub/.well-known/x", None),
            (b"/.well-known/.secret", None),
            (b"no-slash", None),
        ];
        for (rest, want) in table {
            assert_eq!(
                &relative_path(rest),
                want,
                "{:?}",
                String::from_utf8_lossy(rest)
            );
        }
        assert_eq!(
            relative_path(format!("/{}", "a".repeat(MAX_PATH + 1)).as_bytes()),
            None
        );
    }

    /// A mount directory with files, a subdirectory, symlinks in and out, and a secret beside it.
    struct Tree {
        base: PathBuf,
    }

    impl Tree {
        fn new(name: &str) -> Tree {
            let base =
                std::env::temp_dir().join(format!("wizgy-resolve-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let root = base.join("root");
            std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
            std::fs::write(base.join("secret.txt"), "SECRET").expect("write");
            std::fs::write(root.join("a.txt"), "A").expect("write");
            std::fs::write(root.join("sub/b.txt"), "B").expect("write");
            symlink("a.txt", root.join("link-in")).expect("symlink");
            symlink("sub/../a.txt", root.join("link-in-dotdot")).expect("symlink");
            symlink("../secret.txt", root.join("link-out")).expect("symlink");
            symlink(base.join("secret.txt"), root.join("link-abs")).expect("symlink");
            symlink("/", root.join("link-root")).expect("symlink");
            symlink("..", root.join("sub/up")).expect("symlink");
            symlink("../..", root.join("sub/upup")).expect("symlink");
            symlink("deeper/../../..", root.join("sub/tricky")).expect("symlink");
            symlink("loop", root.join("loop")).expect("symlink");
            symlink("/proc/self/root/etc/passwd", root.join("magic")).expect("symlink");
            Tree { base }
        }

        fn root(&self) -> File {
            File::open(self.base.join("root")).expect("open root")
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn read(root: &File, path: &str, opener: Opener) -> Option<String> {
        let mut file = open_beneath(root.as_fd(), path, opener).ok()?;
        let mut text = String::new();
        file.read_to_string(&mut text).ok().map(|_| text)
    }

    fn openers(root: &File) -> Vec<Opener> {
        let mut openers = vec![Opener::Walk];
        if Opener::probe(root.as_fd()) == Opener::Openat2 {
            openers.push(Opener::Openat2);
        }
        openers
    }

    #[test]
    fn symlinks_that_resolve_outside_the_directory_are_never_opened() {
        let tree = Tree::new("symlinks");
        let root = tree.root();
        let table: &[(&str, Option<&str>)] = &[
            ("a.txt", Some("A")),
            ("sub/b.txt", Some("B")),
            ("link-in", Some("A")),
            ("link-in-dotdot", Some("A")),
            ("sub/up/a.txt", Some("A")),
            ("link-out", None),
            ("link-abs", None),
            ("link-root/etc/passwd", None),
            ("sub/upup/secret.txt", None),
            ("sub/tricky/secret.txt", None),
            ("loop", None),
            ("magic", None),
            ("missing", None),
            ("a.txt/x", None),
            // Paths relative_path never produces, refused all the same.
            ("../secret.txt", None),
            ("sub/../../secret.txt", None),
            ("/etc/passwd", None),
        ];
        for opener in openers(&root) {
            for &(path, want) in table {
                assert_eq!(
                    read(&root, path, opener).as_deref(),
                    want,
                    "{path} with {opener:?}"
                );
            }
        }
    }

    #[test]
    fn a_directory_opens_as_itself_and_the_walk_stops_at_the_root() {
        let tree = Tree::new("dirs");
        let root = tree.root();
        for opener in openers(&root) {
            let dir = open_beneath(root.as_fd(), "sub", opener).expect("sub opens");
            assert!(dir.metadata().expect("fstat").is_dir());
            assert!(open_beneath(root.as_fd(), "", opener)
                .expect("root")
                .metadata()
                .expect("fstat")
                .is_dir());
        }
        assert!(walk(root.as_fd(), "sub/../..").is_err());
        assert!(Path::new(&tree.base).join("secret.txt").exists());
    }
}
