//! Latency samples and their percentiles.

use serde::Serialize;
use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Samples {
    pub fn record(&mut self, latency: Duration) {
        self.micros.push(latency.as_micros() as u64);
    }

    pub fn extend(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    pub fn percentiles(&self) -> Percentiles {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted[index] as f64 / 1000.0
        };
        Percentiles {
            count: sorted.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: sorted.last().map(|&m| m as f64 / 1000.0).unwrap_or(0.0),
        }
    }

    /// Counts per bucket of `width_ms`, for the histogram.
    pub fn histogram(&self, width_ms: f64, buckets: usize) -> Vec<usize> {
        let mut counts = vec![0; buckets];
        for &m in &self.micros {
            let bucket = ((m as f64 / 1000.0) / width_ms) as usize;
            counts[bucket.min(buckets - 1)] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut samples = Samples::default();
        for ms in 1..=1000 {
            samples.record(Duration::from_millis(ms));
        }
        let p = samples.percentiles();
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.max_ms, 1000.0);
        assert_eq!(samples.histogram(100.0, 10).iter().sum::<usize>(), 1000);
    }
}
