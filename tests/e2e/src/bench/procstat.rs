//! Memory and CPU of an engine process, from `/proc`, sampled while a phase runs.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Resident memory (MiB) and CPU time (seconds, user + system) of `pid` now.
pub fn read(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some((rss_mib(&status)?, cpu_seconds(&stat)?))
}

/// `VmRSS` of a `/proc/<pid>/status` text, in MiB.
fn rss_mib(status: &str) -> Option<f64> {
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// utime + stime of a `/proc/<pid>/stat` text, in seconds (the kernel's clock ticks are
/// 100 per second on every Linux this runs on).
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// What the samples of one phase say.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    /// Mean resident memory over the phase, MiB.
    pub rss_mib: f64,
    /// Highest resident memory sampled, MiB.
    pub rss_peak_mib: f64,
    /// CPU used over the phase as a share of one core (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Highest CPU over one sampling interval, share of one core.
    pub cpu_peak_cores: f64,
}

/// How often a phase samples its engine.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Mean and peak of `samples` (time, RSS MiB, CPU seconds), in time order.
pub fn usage(samples: &[(Instant, f64, f64)]) -> Usage {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Usage::default();
    };
    let span = last.0.duration_since(first.0).as_secs_f64();
    let cpu_peak = samples
        .windows(2)
        .map(|w| (w[1].2 - w[0].2) / w[1].0.duration_since(w[0].0).as_secs_f64().max(1e-3))
        .fold(0.0, f64::max);
    Usage {
        rss_mib: samples.iter().map(|s| s.1).sum::<f64>() / samples.len() as f64,
        rss_peak_mib: samples.iter().map(|s| s.1).fold(0.0, f64::max),
        cpu_cores: if span > 0.0 {
            (last.2 - first.2) / span
        } else {
            0.0
        },
        cpu_peak_cores: cpu_peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_cpu_come_from_proc_texts() {
        assert_eq!(rss_mib("Name:\tferry\nVmRSS:\t   20480 kB\n"), Some(20.0));
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0";
        assert_eq!(cpu_seconds(stat), Some(2.0));
    }

    #[test]
    fn usage_is_mean_and_peak_over_the_phase() {
        let t = Instant::now();
        let samples = [
            (t, 10.0, 0.0),
            (t + Duration::from_secs(1), 30.0, 0.5),
            (t + Duration::from_secs(2), 20.0, 0.6),
        ];
        let u = usage(&samples);
        assert_eq!(u.rss_mib, 20.0);
        assert_eq!(u.rss_peak_mib, 30.0);
        assert!((u.cpu_cores - 0.3).abs() < 1e-9);
        assert!((u.cpu_peak_cores - 0.5).abs() < 1e-9);
    }

    #[test]
    fn this_process_can_be_read() {
        let (rss, _) = read(std::process::id()).expect("/proc is readable");
        assert!(rss > 0.0);
    }
}
