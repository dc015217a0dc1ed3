//! Percentiles and the figures of the report.

use std::time::Duration;

/// Nearest-rank percentiles of latencies.
#[derive(Clone, Copy)]
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub count: usize,
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = (p / 100.0 * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Stats {
            p50: rank(50.0),
            p99: rank(99.0),
            count: samples.len(),
        }
    }
}

/// One figure of the report.
pub enum Figure {
    Latency(Stats),
    /// Calls (or transactions) per second.
    Rate(f64),
    /// Resident memory in MiB: now and peak.
    Memory {
        rss: f64,
        peak: f64,
    },
    /// CPU time of one process (user and system) per call, in microseconds.
    CpuPerCall(f64),
    /// Not measured here, and why.
    None(&'static str),
}

impl Figure {
    pub fn text(&self) -> String {
        match self {
            Figure::Latency(s) => format!("p50 {} ms, p99 {} ms", ms(s.p50), ms(s.p99)),
            Figure::Rate(rate) => format!("{} calls/s", thousands(*rate)),
            Figure::Memory { rss, peak } => format!("RSS {rss:.1} MiB (peak {peak:.1} MiB)"),
            Figure::CpuPerCall(micros) => format!("{micros:.0} µs of CPU per call"),
            Figure::None(why) => (*why).to_string(),
        }
    }

    /// How many times the floor's the figure costs: p99 over p99, or rate over rate.
    pub fn ratio(&self, floor: &Figure) -> String {
        match (self, floor) {
            (Figure::Latency(s), Figure::Latency(f)) if !f.p99.is_zero() => {
                format!("{:.1} × (p99)", s.p99.as_secs_f64() / f.p99.as_secs_f64())
            }
            (Figure::Rate(s), Figure::Rate(f)) if *f > 0.0 => {
                format!("{:.0} % of the floor", s / f * 100.0)
            }
            _ => String::new(),
        }
    }
}

pub fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// `1234.5` as `1,235`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
