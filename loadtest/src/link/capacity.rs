//! What drains the bottleneck: a fixed rate, a schedule of rates or a Mahimahi trace, and the
//! departure times they give to packets served first-in first-out.

use std::{str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    ConfigError, MahimahiTrace, ParseError, Rate, trace::OPPORTUNITY_BYTES, units::duration_ms,
};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The bottleneck's capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capacity {
    /// No bottleneck: packets only see delay, jitter and loss.
    Unlimited,
    /// A fixed rate (0 is an outage: nothing gets through).
    Rate(Rate),
    /// Rates that change at given times.
    Schedule(Schedule),
    /// Delivery opportunities replayed from a Mahimahi trace.
    Trace(MahimahiTrace),
}

/// One step of a [`Schedule`]: from `at` (since the link started) the capacity is `rate`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateStep {
    /// When the step starts.
    #[serde(rename = "at_ms", with = "duration_ms")]
    pub at: Duration,
    /// The capacity from then on, until the next step.
    pub rate: Rate,
}

/// A capacity that changes in steps; the first step starts at 0 and the last lasts forever.
/// Parses from `SECONDS:RATE,...`, e.g. `0:1000k,40:2500k,60:600k`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<RateStep>", into = "Vec<RateStep>")]
pub struct Schedule {
    steps: Vec<RateStep>,
}

impl Schedule {
    /// A schedule from its steps, which must start at 0 and be in increasing time order.
    pub fn new(steps: Vec<RateStep>) -> Result<Self, ConfigError> {
        let first = steps.first().ok_or(ConfigError::EmptySchedule)?;
        if first.at != Duration::ZERO {
            return Err(ConfigError::ScheduleStart(first.at));
        }
        if let Some(w) = steps.windows(2).find(|w| w[1].at <= w[0].at) {
            return Err(ConfigError::ScheduleOrder {
                earlier: w[0].at,
                later: w[1].at,
            });
        }
        Ok(Schedule { steps })
    }

    /// The same rate forever.
    pub fn constant(rate: Rate) -> Self {
        Schedule {
            steps: vec![RateStep {
                at: Duration::ZERO,
                rate,
            }],
        }
    }

    /// The steps, in time order.
    pub fn steps(&self) -> &[RateStep] {
        &self.steps
    }

    /// The rate at time `t`.
    pub fn rate_at(&self, t: Duration) -> Rate {
        self.steps[self.index_at(t)].rate
    }

    fn index_at(&self, t: Duration) -> usize {
        // The first step is at 0, so at least one step starts at or before `t`.
        self.steps.partition_point(|s| s.at <= t).saturating_sub(1)
    }

    /// The steps overlapping `from..`, as (start, end or None for the last, rate bit/s) in ns.
    fn segments_from(
        &self,
        from: Duration,
    ) -> impl Iterator<Item = (u128, Option<u128>, u128)> + '_ {
        let first = self.index_at(from);
        self.steps[first..]
            .iter()
            .enumerate()
            .map(move |(i, step)| {
                let start = if i == 0 {
                    from.as_nanos()
                } else {
                    step.at.as_nanos()
                };
                let end = self.steps.get(first + i + 1).map(|next| next.at.as_nanos());
                (start, end, u128::from(step.rate.bps()))
            })
    }

    /// When sending `bits` that start at `start` ends; `None` if the capacity drops to 0 for good
    /// before then.
    fn finish(&self, start: Duration, bits: u64) -> Option<Duration> {
        if bits == 0 {
            return Some(start);
        }
        // Work left, in bit·ns/s, so that a segment of `span` ns at `rate` bit/s does rate·span.
        let mut left = u128::from(bits) * NANOS_PER_SECOND;
        for (seg_start, seg_end, rate) in self.segments_from(start) {
            let span_work = seg_end.map(|end| rate * (end - seg_start));
            match span_work {
                Some(work) if work < left => left -= work,
                _ if rate == 0 => return None, // only reached on the last segment
                _ => return Some(nanos(seg_start + left.div_ceil(rate))),
            }
        }
        None
    }

    /// The bits the capacity can carry between `from` and `to`.
    fn bits_between(&self, from: Duration, to: Duration) -> u64 {
        let to = to.as_nanos();
        let mut work = 0;
        for (start, end, rate) in self.segments_from(from) {
            if start >= to {
                break;
            }
            work += rate * (end.unwrap_or(to).min(to) - start);
        }
        u64::try_from(work / NANOS_PER_SECOND).unwrap_or(u64::MAX)
    }
}

impl FromStr for Schedule {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Schedule(s.to_owned());
        let steps = s
            .split(',')
            .map(|step| {
                let (at, rate) = step.split_once(':').ok_or_else(err)?;
                let at: f64 = at.trim().parse().map_err(|_| err())?;
                let at = Duration::try_from_secs_f64(at).map_err(|_| err())?;
                let rate = rate.parse().map_err(|_| err())?;
                Ok(RateStep { at, rate })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;
        Ok(Schedule::new(steps)?)
    }
}

impl TryFrom<Vec<RateStep>> for Schedule {
    type Error = ConfigError;

    fn try_from(steps: Vec<RateStep>) -> Result<Self, Self::Error> {
        Schedule::new(steps)
    }
}

impl From<Schedule> for Vec<RateStep> {
    fn from(schedule: Schedule) -> Self {
        schedule.steps
    }
}

fn nanos(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// The bottleneck's server: gives each packet, in arrival order, the time its service starts
/// (it reaches the head of the queue) and the time it has left the bottleneck.
pub(crate) enum Service {
    Unlimited,
    Rate {
        schedule: Schedule,
        /// When the packet before finishes.
        free_at: Duration,
    },
    Trace {
        trace: MahimahiTrace,
        /// The opportunity the packet before finished in, and the bytes it used there.
        current: u64,
        used: usize,
    },
}

impl Service {
    pub fn new(capacity: &Capacity) -> Self {
        match capacity {
            Capacity::Unlimited => Service::Unlimited,
            Capacity::Rate(rate) => Service::rate(Schedule::constant(*rate)),
            Capacity::Schedule(schedule) => Service::rate(schedule.clone()),
            Capacity::Trace(trace) => Service::Trace {
                trace: trace.clone(),
                current: 0,
                used: 0,
            },
        }
    }

    fn rate(schedule: Schedule) -> Self {
        Service::Rate {
            schedule,
            free_at: Duration::ZERO,
        }
    }

    /// Serves a packet of `len` bytes that arrives at `arrival`, after every packet served so
    /// far: returns (start, departure), or `None` if it would never leave (the capacity has
    /// dropped to 0 for good). `arrival` must not go backwards between calls.
    pub fn serve(&mut self, arrival: Duration, len: usize) -> Option<(Duration, Duration)> {
        match self {
            Service::Unlimited => Some((arrival, arrival)),
            Service::Rate { schedule, free_at } => {
                let start = arrival.max(*free_at);
                let departure = schedule.finish(start, len as u64 * 8)?;
                *free_at = departure;
                Some((start, departure))
            }
            Service::Trace {
                trace,
                current,
                used,
            } => {
                // Mahimahi: each opportunity carries up to OPPORTUNITY_BYTES of whatever is queued
                // at its time; a packet may take the rest of the one its predecessor ended in.
                let (mut n, mut filled) = (*current, *used);
                if filled >= OPPORTUNITY_BYTES || trace.time_of(n) < arrival {
                    n = (n + 1).max(trace.first_at_or_after(arrival));
                    filled = 0;
                }
                let start = trace.time_of(n);
                let mut left = len;
                loop {
                    let take = left.min(OPPORTUNITY_BYTES - filled);
                    filled += take;
                    left -= take;
                    if left == 0 {
                        break;
                    }
                    n += 1;
                    filled = 0;
                }
                (*current, *used) = (n, filled);
                Some((start, trace.time_of(n)))
            }
        }
    }

    /// The bytes the bottleneck can send in `window` from `now` at its current pace: the current
    /// rate times `window` for a rate, the opportunities within the window for a trace. `None`
    /// when unlimited.
    pub fn drain_bytes(&self, now: Duration, window: Duration) -> Option<u64> {
        match self {
            Service::Unlimited => None,
            Service::Rate { schedule, .. } => {
                let bits =
                    u128::from(schedule.rate_at(now).bps()) * window.as_nanos() / NANOS_PER_SECOND;
                Some(u64::try_from(bits / 8).unwrap_or(u64::MAX))
            }
            Service::Trace { .. } => self
                .capacity_bits(now, now.saturating_add(window))
                .map(|bits| bits / 8),
        }
    }

    /// The bits the bottleneck can carry between `from` and `to`; `None` when unlimited.
    pub fn capacity_bits(&self, from: Duration, to: Duration) -> Option<u64> {
        match self {
            Service::Unlimited => None,
            Service::Rate { schedule, .. } => Some(schedule.bits_between(from, to)),
            Service::Trace { trace, .. } => {
                let opportunities = trace.first_at_or_after(to) - trace.first_at_or_after(from);
                Some(opportunities * OPPORTUNITY_BYTES as u64 * 8)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn schedules_parse_and_validate() {
        let s: Schedule = "0:1000k, 40:2500k,60.5:600k".parse().unwrap();
        assert_eq!(s.steps().len(), 3);
        assert_eq!(s.rate_at(ms(39_999)), Rate::from_kbps(1000));
        assert_eq!(s.rate_at(ms(40_000)), Rate::from_kbps(2500));
        assert_eq!(s.rate_at(ms(60_500)), Rate::from_kbps(600));
        assert!(matches!(
            "5:1M".parse::<Schedule>(),
            Err(ParseError::Config(ConfigError::ScheduleStart(_)))
        ));
        assert!(matches!(
            "0:1M,10:2M,10:3M".parse::<Schedule>(),
            Err(ParseError::Config(ConfigError::ScheduleOrder { .. }))
        ));
        for bad in ["", "0", "0:1x", "a:1M", "0:1M,"] {
            assert!(
                matches!(bad.parse::<Schedule>(), Err(ParseError::Schedule(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn finish_integrates_across_steps() {
        // 1 Mbit/s for the first second, then 0 (outage) until 2 s, then 2 Mbit/s.
        let s: Schedule = "0:1M,1:0,2:2M".parse().unwrap();
        assert_eq!(s.finish(ms(0), 8_000), Some(ms(8)));
        // 500 kbit before the step at 1 s, the other 500 kbit at 2 Mbit/s after the outage.
        assert_eq!(s.finish(ms(500), 1_000_000), Some(ms(2_250)));
        assert_eq!(s.bits_between(ms(500), ms(2_500)), 500_000 + 1_000_000);
        let outage: Schedule = "0:1M,1:0".parse().unwrap();
        assert_eq!(outage.finish(ms(999), 8_000), None);
    }

    #[test]
    fn trace_packets_share_and_span_opportunities() {
        let trace = MahimahiTrace::from_millis(vec![10]).unwrap(); // one opportunity every 10 ms
        let mut service = Service::new(&Capacity::Trace(trace));
        // Two small packets share the opportunity at 10 ms; the third does not fit and waits.
        assert_eq!(service.serve(ms(1), 700), Some((ms(10), ms(10))));
        assert_eq!(service.serve(ms(2), 700), Some((ms(10), ms(10))));
        assert_eq!(service.serve(ms(3), 700), Some((ms(10), ms(20))));
        // A packet arriving after an opportunity cannot use its leftover bytes.
        assert_eq!(service.serve(ms(25), 100), Some((ms(30), ms(30))));
        // A 4000-byte packet needs three opportunities.
        assert_eq!(service.serve(ms(31), 4000), Some((ms(40), ms(60))));
        assert_eq!(service.capacity_bits(ms(0), ms(100)), Some(9 * 12_000));
    }
}
