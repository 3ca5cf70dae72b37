//! Latencies and throughput of one benchmark case. (Benchmarks include this file by path.)

use std::time::Duration;

pub struct Figures {
    /// Sorted.
    latencies: Vec<Duration>,
    pub per_second: f64,
}

impl Figures {
    pub fn new(mut latencies: Vec<Duration>, per_second: f64) -> Self {
        latencies.sort();
        Self {
            latencies,
            per_second,
        }
    }

    /// The `percent`th percentile in milliseconds (nearest rank).
    pub fn percentile_ms(&self, percent: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((percent / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[index].as_secs_f64() * 1e3
    }
}
