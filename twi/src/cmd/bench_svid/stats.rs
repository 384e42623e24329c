//! Latency summaries with the tail the issuance goal is stated at (p99), which
//! `twi_core::bench_support::stats` (median, min, p90) does not give.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of one measurement, in nanoseconds (nearest-rank: the p-th percentile is the smallest
/// sample at or above p % of the samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Lat {
    pub(crate) n: usize,
    pub(crate) min_ns: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p90_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) max_ns: u64,
    pub(crate) mean_ns: u64,
}

/// Summarises `samples` (all zero when empty).
pub(crate) fn summarize(samples: &[Duration]) -> Lat {
    let mut ns: Vec<u64> = samples
        .iter()
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .collect();
    ns.sort_unstable();
    let n = ns.len();
    let rank = |p: usize| -> u64 {
        // ceil(p/100 * n) - 1, clamped to the samples.
        let k = (p * n).div_ceil(100).saturating_sub(1);
        ns.get(k.min(n.saturating_sub(1))).copied().unwrap_or(0)
    };
    let sum: u128 = ns.iter().map(|&x| u128::from(x)).sum();
    Lat {
        n,
        min_ns: ns.first().copied().unwrap_or(0),
        p50_ns: rank(50),
        p90_ns: rank(90),
        p99_ns: rank(99),
        max_ns: ns.last().copied().unwrap_or(0),
        mean_ns: u64::try_from(sum / (n.max(1) as u128)).unwrap_or(u64::MAX),
    }
}

/// `a / b` (infinity when `b` is zero).
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::INFINITY
    } else {
        a as f64 / b as f64
    }
}

/// Microseconds with one decimal, for tables.
pub(crate) fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).rev().map(Duration::from_nanos).collect();
        let l = summarize(&s);
        assert_eq!(
            (l.n, l.min_ns, l.p50_ns, l.p90_ns, l.p99_ns, l.max_ns),
            (100, 1, 50, 90, 99, 100)
        );
        assert_eq!(l.mean_ns, 50); // 50.5 truncated
        let one = summarize(&[Duration::from_nanos(7)]);
        assert_eq!((one.p50_ns, one.p99_ns, one.max_ns), (7, 7, 7));
        assert_eq!(summarize(&[]), Lat::default());
        // 1000 samples: p99 is the 990th smallest, not the maximum.
        let s: Vec<Duration> = (1..=1000).map(Duration::from_nanos).collect();
        assert_eq!(summarize(&s).p99_ns, 990);
    }

    #[test]
    fn ratios() {
        assert!((ratio(110, 100) - 1.1).abs() < 1e-12);
        assert!(ratio(1, 0).is_infinite());
    }
}
