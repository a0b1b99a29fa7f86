//! Replays the committed fuzz seeds and regression inputs through the fuzz targets' invariants.
//!
//! The invariants live in `fuzz/src/checks.rs` (included here by path, so `cargo test` judges
//! every file exactly as the fuzzer does, without nightly or libFuzzer). Each target's files
//! are `fuzz/corpus/<target>/*` (hand-written seeds) and `fuzz/artifacts-regressions/<target>/*`
//! (minimized inputs that once broke an invariant). See `fuzz/README.md`.

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Fewer seeds than this means the corpus went missing, not that the parser is fine.
const MIN_SEEDS: usize = 20;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files directly in `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every seed and regression input of `target`; reports every failing file.
fn replay(target: &str, check: fn(&[u8])) {
    let seeds = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        seeds.len() >= MIN_SEEDS,
        "fuzz/corpus/{target} has {} seeds, expected at least {MIN_SEEDS}",
        seeds.len()
    );
    let regressions = files_in(&fuzz_dir().join("artifacts-regressions").join(target));
    let mut failures = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let input = std::fs::read(path).expect("readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs broke an invariant (messages above): {failures:#?}",
        failures.len(),
        seeds.len() + regressions.len()
    );
}

#[test]
fn head_corpus_keeps_the_invariants() {
    replay("head", checks::check_head);
}

#[test]
fn chunked_corpus_keeps_the_invariants() {
    replay("chunked", checks::check_chunked);
}

#[test]
fn proxy_protocol_corpus_keeps_the_invariants() {
    replay("proxy_protocol", checks::check_proxy);
}

#[test]
fn static_path_corpus_keeps_the_invariants() {
    replay("static_path", checks::check_static_path);
}

#[test]
fn range_corpus_keeps_the_invariants() {
    replay("range", checks::check_range);
}
