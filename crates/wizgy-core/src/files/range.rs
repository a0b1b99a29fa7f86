//! The `Range` request field (RFC 9110 §14.1.2) for one file of known size: which bytes a
//! GET asks for. Pure: a field value and a size in, a decision out.
//!
//! Hand-written, not a crate: the few crates that parse it return every range as listed and
//! leave the decision (how many, overlapping, amplification) to the caller, which is the part
//! that matters here; the grammar itself is a dozen lines. Several ranges are answered with
//! the whole file (RFC 9110 §14.2: a server "MAY ignore the Range header field"), so a
//! response is never more than the file's bytes, however the ranges overlap.

/// What to send for a request that carries `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranges {
    /// The whole representation, 200: no usable Range (malformed, another unit, or several
    /// ranges of which one at least is satisfiable).
    Whole,
    /// One satisfiable range: bytes `start..=end` (206).
    Single { start: u64, end: u64 },
    /// No range overlaps the file (416 with `Content-Range: bytes */SIZE`).
    Unsatisfiable,
}

/// More range specs than this are not even looked at (the whole file is sent): a field of
/// thousands of tiny ranges costs nothing to refuse.
const MAX_SPECS: usize = 64;

/// Decides what `value` (a `Range` field value) asks of a file of `size` bytes.
pub fn parse(value: &[u8], size: u64) -> Ranges {
    // ranges-specifier = range-unit "=" range-set; the unit is case-insensitive (§14.1).
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return Ranges::Whole;
    };
    if !value[..eq].eq_ignore_ascii_case(b"bytes") {
        return Ranges::Whole;
    }
    let mut satisfiable: Option<(u64, u64)> = None;
    let mut several = false;
    let mut specs = 0usize;
    // range-set = 1#range-spec: empty list elements are allowed and ignored (§5.6.1).
    for spec in value[eq + 1..].split(|&b| b == b',') {
        let spec = trim_ows(spec);
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        if specs > MAX_SPECS {
            return Ranges::Whole;
        }
        let Some(range) = parse_spec(spec) else {
            // One malformed spec makes the whole field invalid: ignore it (§14.2).
            return Ranges::Whole;
        };
        if let Some(bytes) = range.within(size) {
            // A second satisfiable range: several, answered whole. The rest is still
            // checked for syntax, so that a malformed field is ignored as a whole.
            several |= satisfiable.is_some();
            satisfiable = Some(bytes);
        }
    }
    match satisfiable {
        _ if specs == 0 => Ranges::Whole,
        None => Ranges::Unsatisfiable,
        Some(_) if several => Ranges::Whole,
        Some((start, end)) => Ranges::Single { start, end },
    }
}

/// One range-spec as written.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// `first-last` or `first-` (last: `None`).
    From { first: u64, last: Option<u64> },
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

impl Spec {
    /// The bytes this spec selects in a file of `size` bytes, if any (§14.1.2: a range is
    /// satisfiable if its first-pos is below the size, or a suffix range's length is not 0).
    fn within(self, size: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From { first, last } => {
                (first < size).then(|| (first, last.map_or(size - 1, |l| l.min(size - 1))))
            }
            Spec::Suffix(length) => {
                (length > 0 && size > 0).then(|| (size.saturating_sub(length), size - 1))
            }
        }
    }
}

/// `int-range = first-pos "-" [ last-pos ]` / `suffix-range = "-" suffix-length`.
fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(digits(last)?)
    };
    // "A range with a last-pos less than its first-pos is invalid" (§14.1.1).
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(Spec::From { first, last })
}

/// 1*DIGIT; a number past u64 saturates (it is beyond any file either way).
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn trim_ows(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_fields_decide_as_rfc_9110_says() {
        use Ranges::*;
        let single = |start, end| Single { start, end };
        // (field value, file size, decision)
        let table: &[(&str, u64, Ranges)] = &[
            ("bytes=0-499", 10_000, single(0, 499)),
            ("bytes=500-999", 10_000, single(500, 999)),
            ("bytes=-500", 10_000, single(9_500, 9_999)),
            ("bytes=9500-", 10_000, single(9_500, 9_999)),
            ("bytes=0-0", 10_000, single(0, 0)),
            ("bytes=-1", 10_000, single(9_999, 9_999)),
            ("bytes=0-99999", 10_000, single(0, 9_999)),
            ("bytes=-99999", 10_000, single(0, 9_999)),
            ("Bytes=1-2", 10, single(1, 2)),
            ("bytes= 1-2 ,", 10, single(1, 2)),
            ("bytes=0-18446744073709551616", 10, single(0, 9)),
            // Unsatisfiable: starts at or past the end, an empty suffix, an empty file.
            ("bytes=10000-", 10_000, Unsatisfiable),
            ("bytes=10000-20000", 10_000, Unsatisfiable),
            ("bytes=-0", 10_000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Unsatisfiable),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            ("bytes=20-30, 40-50", 10, Unsatisfiable),
            // Several satisfiable ranges: the whole file.
            ("bytes=0-1,2-3", 10, Whole),
            ("bytes=0-,0-,0-", 10, Whole),
            ("bytes=0-1, 20-30", 10, single(0, 1)),
            // Ignored: malformed, another unit, reversed, signs, no '='.
            ("bytes=5-1", 10, Whole),
            ("bytes=a-b", 10, Whole),
            ("bytes=+1-2", 10, Whole),
            ("bytes=1-2-3", 10, Whole),
            ("bytes=--1", 10, Whole),
            ("bytes=", 10, Whole),
            ("bytes=,", 10, Whole),
            ("bytes=-", 10, Whole),
            ("items=0-1", 10, Whole),
            ("bytes 0-1", 10, Whole),
            ("bytes=0-1,x", 10, Whole),
            ("", 10, Whole),
        ];
        for &(value, size, want) in table {
            assert_eq!(parse(value.as_bytes(), size), want, "{value:?} of {size}");
        }
    }

    #[test]
    fn thousands_of_overlapping_ranges_are_answered_whole() {
        let value = format!("bytes={}", vec!["0-"; 5000].join(","));
        assert_eq!(parse(value.as_bytes(), 100), Ranges::Whole);
        let value = format!("bytes={}", vec!["1-1"; 50].join(","));
        assert_eq!(parse(value.as_bytes(), 100), Ranges::Whole);
    }
}
