//! The named scenarios of `loadtest bwe`: the county line (capacity over time, delay, loss, queue),
//! the consultations that share it and the site's line budget.

use std::ops::Range;
use std::time::Duration;

use thiserror::Error;

use crate::link::{Capacity, GilbertElliott, LinkConfig, QueueLimit, Rate, RateStep, Schedule};

/// The scenario names `--scenario` takes.
pub const NAMES: [&str; 4] = ["rmcat-5.1", "lossy-768k", "county-512k", "two-consults"];

/// An unknown scenario or a bad time scale.
#[derive(Debug, Error, PartialEq)]
pub enum ScenarioError {
    /// Not one of [`NAMES`].
    #[error("unknown scenario {0:?} (one of: {names})", names = NAMES.join(", "))]
    Unknown(String),
    /// The time scale is not within (0, 1], or leaves a segment shorter than a second.
    #[error(
        "the time scale must be at most 1 and leave every segment at least a second long, not {0}"
    )]
    Scale(f64),
}

/// One consultation between the county site and a specialist centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsultationPlan {
    /// Requested as an emergency (its media has first claim on the site's line).
    pub emergency: bool,
    /// How many of the county doctor's clients watch it behind the line (each one a subscriber).
    pub county_viewers: usize,
}

/// A scenario: the county line, its budget and the consultations on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// How long it runs (after the warm-up).
    pub duration: Duration,
    /// The downlink capacity (relay → county), kbit/s, from each step's start: the segments.
    pub steps: Vec<(Duration, u32)>,
    /// Relay → county, without its capacity (from `steps`).
    pub down: LinkConfig,
    /// County → relay.
    pub up: LinkConfig,
    /// The county site's line budget, kbit/s (set as its configured capacity).
    pub budget_kbps: u32,
    /// The consultations, each with a specialist publishing simulcast video from an east centre
    /// (not behind the line).
    pub consultations: Vec<ConsultationPlan>,
}

impl Scenario {
    /// The scenario called `name`.
    pub fn named(name: &str) -> Result<Self, ScenarioError> {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let one = |county_viewers| {
            vec![ConsultationPlan {
                emergency: false,
                county_viewers,
            }]
        };
        let line = |delay_ms, queue_ms| LinkConfig {
            delay: ms(delay_ms),
            queue: QueueLimit::Time(ms(queue_ms)),
            ..LinkConfig::default()
        };
        // A constant line for 60 s, the same each way (the uplink's loss drawn apart), whose
        // capacity is the site's budget.
        let both_ways = |name, kbps: u32, link: LinkConfig, county_viewers| Scenario {
            name,
            duration: secs(60),
            steps: vec![(secs(0), kbps)],
            up: LinkConfig {
                capacity: Capacity::Rate(Rate::from_kbps(u64::from(kbps))),
                seed: 2,
                ..link.clone()
            },
            down: link,
            budget_kbps: kbps,
            consultations: one(county_viewers),
        };
        Ok(match name {
            // RFC 8867 §5.1: variable available capacity, one flow; 50 ms one way, 300 ms queue.
            "rmcat-5.1" => Scenario {
                name: "rmcat-5.1",
                duration: secs(100),
                steps: vec![
                    (secs(0), 1000),
                    (secs(40), 2500),
                    (secs(60), 600),
                    (secs(80), 1000),
                ],
                down: line(50, 300),
                up: line(50, 300),
                budget_kbps: 2500,
                consultations: one(1),
            },
            // 768 kbit/s each way, 100 ms round trip, 5 % random loss each way.
            "lossy-768k" => both_ways(
                "lossy-768k",
                768,
                LinkConfig {
                    loss: 0.05,
                    ..line(50, 300)
                },
                1,
            ),
            // 512 kbit/s each way, 60 ms round trip, 1 % loss in bursts of 3 packets on average,
            // two of the county's clients in the consultation sharing the site's budget.
            "county-512k" => both_ways(
                "county-512k",
                512,
                LinkConfig {
                    // Valid constants (the tests check that it is set).
                    burst_loss: GilbertElliott::from_mean(0.01, 3.0).ok(),
                    ..line(30, 300)
                },
                2,
            ),
            // Two consultations from the county on its 2 Mbit/s line (budget 2 Mbit/s), the second
            // an emergency; 25 ms one way.
            "two-consults" => Scenario {
                name: "two-consults",
                duration: secs(60),
                steps: vec![(secs(0), 2000)],
                down: line(25, 300),
                up: line(25, 300),
                budget_kbps: 2000,
                consultations: vec![
                    ConsultationPlan {
                        emergency: false,
                        county_viewers: 1,
                    },
                    ConsultationPlan {
                        emergency: true,
                        county_viewers: 1,
                    },
                ],
            },
            other => return Err(ScenarioError::Unknown(other.to_string())),
        })
    }

    /// The same scenario with its duration and steps multiplied by `scale` (not the line's delay or
    /// queue): a short run of the same shape, for a smoke test.
    pub fn scaled(mut self, scale: f64) -> Result<Self, ScenarioError> {
        if !(scale > 0.0 && scale <= 1.0) {
            return Err(ScenarioError::Scale(scale));
        }
        self.duration = self.duration.mul_f64(scale);
        for (at, _) in &mut self.steps {
            *at = at.mul_f64(scale);
        }
        // The figures come in one-second bins.
        if self
            .segments()
            .iter()
            .any(|s| s.end - s.start < Duration::from_secs(1))
        {
            return Err(ScenarioError::Scale(scale));
        }
        Ok(self)
    }

    /// Each step's span, in scenario time.
    pub fn segments(&self) -> Vec<Range<Duration>> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, (start, _))| {
                let end = self.steps.get(i + 1).map_or(self.duration, |s| s.0);
                *start..end
            })
            .collect()
    }

    /// The downlink as the emulator runs it: the first capacity during the `warmup`, then the steps
    /// shifted by it.
    pub fn down_link(&self, warmup: Duration) -> LinkConfig {
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, (at, kbps))| RateStep {
                at: if i == 0 { Duration::ZERO } else { *at + warmup },
                rate: Rate::from_kbps(u64::from(*kbps)),
            })
            .collect();
        let capacity = match Schedule::new(steps) {
            Ok(s) => Capacity::Schedule(s),
            // The steps start at 0 and increase (tested): cannot happen.
            Err(_) => Capacity::Unlimited,
        };
        LinkConfig {
            capacity,
            ..self.down.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_a_valid_scenario() {
        for name in NAMES {
            let s = Scenario::named(name).unwrap();
            assert_eq!(s.name, name);
            s.down_link(Duration::from_secs(10)).validate().unwrap();
            s.up.validate().unwrap();
            assert!(matches!(
                s.down_link(Duration::ZERO).capacity,
                Capacity::Schedule(_)
            ));
            let segments = s.segments();
            assert_eq!(segments.first().unwrap().start, Duration::ZERO);
            assert_eq!(segments.last().unwrap().end, s.duration);
            assert!(segments.windows(2).all(|w| w[0].end == w[1].start));
        }
        let county = Scenario::named("county-512k").unwrap();
        assert!(county.down.burst_loss.is_some() && county.up.burst_loss.is_some());
        assert_eq!(county.up.capacity, Capacity::Rate(Rate::from_kbps(512)));
        assert_eq!(
            Scenario::named("rmcat").unwrap_err(),
            ScenarioError::Unknown("rmcat".into())
        );
    }

    #[test]
    fn rmcat_steps_follow_rfc_8867() {
        let s = Scenario::named("rmcat-5.1").unwrap();
        let kbps: Vec<u32> = s.steps.iter().map(|s| s.1).collect();
        assert_eq!(kbps, [1000, 2500, 600, 1000]);
        let link = s.down_link(Duration::from_secs(10));
        let Capacity::Schedule(schedule) = link.capacity else {
            panic!("a schedule")
        };
        let at = |s| schedule.rate_at(Duration::from_secs(s)).bps();
        assert_eq!(
            [at(0), at(49), at(50), at(70), at(90)],
            [1_000_000, 1_000_000, 2_500_000, 600_000, 1_000_000]
        );
    }

    #[test]
    fn scaling_shortens_every_time() {
        let s = Scenario::named("rmcat-5.1").unwrap().scaled(0.2).unwrap();
        assert_eq!(s.duration, Duration::from_secs(20));
        assert_eq!(
            s.segments()[1],
            Duration::from_secs(8)..Duration::from_secs(12)
        );
        // 0.01 leaves rmcat-5.1's 20 s segments at 0.2 s.
        for bad in [0.0, -1.0, 1.5, f64::NAN, 0.01] {
            assert!(Scenario::named("rmcat-5.1").unwrap().scaled(bad).is_err());
        }
    }
}
