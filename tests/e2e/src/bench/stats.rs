//! Percentiles of a sample of durations, the way the benchmark reports them.

use std::time::Duration;

use serde::Serialize;

/// p50, p99 and max of a sample, in milliseconds, and its size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The value at quantile `q` (0..=1) of `sorted` by the nearest-rank method: the smallest value
/// with at least `q` of the sample at or below it. `None` for an empty sample.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarises `sample` (any order).
pub fn summarise(sample: &[Duration]) -> Summary {
    let mut ms: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    Summary {
        count: ms.len(),
        p50_ms: quantile(&ms, 0.50).unwrap_or(0.0),
        p99_ms: quantile(&ms, 0.99).unwrap_or(0.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let sample: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sample, 0.5), Some(50.0));
        assert_eq!(quantile(&sample, 0.99), Some(99.0));
        assert_eq!(quantile(&sample, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_summary_is_in_milliseconds_whatever_the_order() {
        let sample = [300, 100, 200].map(Duration::from_millis);
        let summary = summarise(&sample);
        assert_eq!(summary.count, 3);
        assert_eq!(summary.p50_ms, 200.0);
        assert_eq!(summary.p99_ms, 300.0);
        assert_eq!(summary.max_ms, 300.0);
    }
}
