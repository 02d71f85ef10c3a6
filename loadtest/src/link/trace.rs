//! Mahimahi packet-delivery traces.
//!
//! A trace is a text file with one integer per line: a time in milliseconds at which the link can
//! deliver one packet of up to [`OPPORTUNITY_BYTES`] bytes (a *delivery opportunity*). Several
//! lines may carry the same time. The trace repeats with the last timestamp as its period, so a
//! file holding the single line `12` is a 1 Mbit/s link (1500 bytes every 12 ms).

use std::{path::Path, time::Duration};

use serde::{Deserialize, Serialize};

use super::{Rate, TraceError};

/// The bytes one delivery opportunity carries (Mahimahi's MTU-sized opportunity).
pub const OPPORTUNITY_BYTES: usize = 1500;

/// The largest trace file read (a minute of 100 Mbit/s opportunities is about 4 MB).
pub const MAX_TRACE_BYTES: u64 = 64 * 1024 * 1024;

/// A parsed Mahimahi trace: non-decreasing millisecond timestamps whose last one, above zero, is
/// the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u64>", into = "Vec<u64>")]
pub struct MahimahiTrace {
    times_ms: Vec<u64>,
}

impl MahimahiTrace {
    /// Reads and parses a trace file.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        use std::io::Read;
        let origin = path.display().to_string();
        let read_error = |cause| TraceError::Read {
            origin: origin.clone(),
            cause,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut text = String::new();
        file.take(MAX_TRACE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_TRACE_BYTES {
            return Err(TraceError::TooLarge {
                origin,
                limit: MAX_TRACE_BYTES,
            });
        }
        Self::parse(&text, &origin)
    }

    /// Parses a trace's text; `origin` names it in errors (usually the file name). Blank lines
    /// are skipped.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TraceError> {
        let mut times_ms = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let value: u64 = text.parse().map_err(|_| TraceError::Timestamp {
                origin: origin.to_owned(),
                line: index + 1,
                text: text.to_owned(),
            })?;
            if let Some(&previous) = times_ms.last()
                && value < previous
            {
                return Err(TraceError::Order {
                    origin: origin.to_owned(),
                    line: index + 1,
                    value,
                    previous,
                });
            }
            times_ms.push(value);
        }
        Self::check(times_ms, origin)
    }

    /// A trace from its millisecond timestamps.
    pub fn from_millis(times_ms: Vec<u64>) -> Result<Self, TraceError> {
        let origin = "trace";
        if let Some(i) = times_ms.windows(2).position(|w| w[1] < w[0]) {
            let (previous, value) = (times_ms[i], times_ms[i + 1]);
            return Err(TraceError::Order {
                origin: origin.into(),
                line: i + 2,
                value,
                previous,
            });
        }
        Self::check(times_ms, origin)
    }

    fn check(times_ms: Vec<u64>, origin: &str) -> Result<Self, TraceError> {
        match times_ms.last() {
            None => Err(TraceError::Empty {
                origin: origin.to_owned(),
            }),
            Some(0) => Err(TraceError::ZeroPeriod {
                origin: origin.to_owned(),
            }),
            Some(_) => Ok(MahimahiTrace { times_ms }),
        }
    }

    /// The time after which the trace repeats (its last timestamp).
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms())
    }

    /// The average capacity over one period.
    pub fn mean_rate(&self) -> Rate {
        let bits = (self.times_ms.len() * OPPORTUNITY_BYTES * 8) as u64;
        Rate::from_bps(bits * 1000 / self.period_ms())
    }

    fn period_ms(&self) -> u64 {
        // `check` guarantees a last timestamp above 0.
        self.times_ms.last().copied().unwrap_or(1)
    }

    /// The time of delivery opportunity number `n`, counting from 0 across repetitions.
    pub(crate) fn time_of(&self, n: u64) -> Duration {
        let len = self.times_ms.len() as u64;
        let ms = (n / len) * self.period_ms() + self.times_ms[(n % len) as usize];
        Duration::from_millis(ms)
    }

    /// The number of the first opportunity at or after `t` (equivalently: how many come
    /// before `t`).
    pub(crate) fn first_at_or_after(&self, t: Duration) -> u64 {
        let period_ns = u128::from(self.period_ms()) * 1_000_000;
        let t_ns = t.as_nanos();
        let len = self.times_ms.len() as u64;
        // The repetition holding `t`; the previous one may end exactly at `t`.
        let mut k = ((t_ns / period_ns) as u64).saturating_sub(1);
        loop {
            let base = u128::from(k) * period_ns;
            let i = self
                .times_ms
                .partition_point(|&ms| base + u128::from(ms) * 1_000_000 < t_ns);
            if i < self.times_ms.len() {
                return k * len + i as u64;
            }
            k += 1;
        }
    }
}

impl TryFrom<Vec<u64>> for MahimahiTrace {
    type Error = TraceError;

    fn try_from(times_ms: Vec<u64>) -> Result<Self, Self::Error> {
        Self::from_millis(times_ms)
    }
}

impl From<MahimahiTrace> for Vec<u64> {
    fn from(trace: MahimahiTrace) -> Self {
        trace.times_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_all() {
        let path = std::env::temp_dir().join(format!("loadtest-big-{}.trace", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_TRACE_BYTES + 10).unwrap();
        let err = MahimahiTrace::load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, TraceError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn parses_and_reports_bad_lines_by_number() {
        let trace = MahimahiTrace::parse("0\n12\n12\n\n24\n", "t.trace").unwrap();
        assert_eq!(trace.period(), Duration::from_millis(24));
        assert_eq!(trace.mean_rate(), Rate::from_bps(2_000_000));

        let err = MahimahiTrace::parse("5\nabc\n", "up.trace")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "up.trace:2: 'abc' is not a millisecond timestamp (one non-negative integer per line)"
        );
        let err = MahimahiTrace::parse("5\n3\n", "up.trace")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "up.trace:2: timestamp 3 is smaller than the one before it (5)"
        );
        assert!(matches!(
            MahimahiTrace::parse("\n", "x"),
            Err(TraceError::Empty { .. })
        ));
        assert!(matches!(
            MahimahiTrace::parse("0\n0\n", "x"),
            Err(TraceError::ZeroPeriod { .. })
        ));
        let missing = MahimahiTrace::load(Path::new("/nonexistent/x.trace")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent/x.trace: cannot read the trace")
        );
    }

    #[test]
    fn opportunities_repeat_with_the_period() {
        let trace = MahimahiTrace::from_millis(vec![0, 5, 10]).unwrap();
        let times: Vec<u64> = (0..7)
            .map(|n| trace.time_of(n).as_millis() as u64)
            .collect();
        // The 0 of each repetition coincides with the previous repetition's 10, as in Mahimahi.
        assert_eq!(times, [0, 5, 10, 10, 15, 20, 20]);
        let ms = Duration::from_millis;
        assert_eq!(trace.first_at_or_after(ms(0)), 0);
        assert_eq!(trace.first_at_or_after(ms(1)), 1);
        assert_eq!(trace.first_at_or_after(ms(10)), 2);
        assert_eq!(trace.first_at_or_after(ms(11)), 4);
        assert_eq!(trace.first_at_or_after(ms(20)), 5);
        assert_eq!(trace.first_at_or_after(ms(20) + Duration::from_nanos(1)), 7);
    }
}
