//! Invariants for wizgy-core's parsers, shared by the fuzz targets (`fuzz_targets/*.rs`) and
//! the corpus replay test (`crates/wizgy-core/tests/fuzz_corpus.rs`, which includes
//! `checks.rs` by path). Each check panics when an invariant is broken; libFuzzer reports a
//! panic as a crash.

mod checks;

pub use checks::{check_chunked, check_head, check_proxy, check_range, check_static_path};
