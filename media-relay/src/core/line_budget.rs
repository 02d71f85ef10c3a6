//! A site's line budget shared between the relay's subscribers at that site.
//!
//! A county hospital reaches the relay over one dedicated line, shared by every consultation it holds.
//! Each subscriber's own estimate (TWCC) sees only its own traffic, so two calls at one site would each
//! believe they own the line. [`share`] splits the site's budget (from its configuration or its latest
//! line measurement) into a cap per subscriber: every subscriber first gets its minimum (audio and the
//! lowest video layer), emergencies first, then the remainder is shared max-min fairly up to what each
//! can use, emergencies before the others.
//!
//! The same blindness makes a small flow beside a large one misread the line: the queue the large
//! flow's bursts build makes the small one's estimator back off to almost nothing, and it climbs back
//! slowly, while the line is half empty (measured with Chromium, docs/benchmarks.md). The largest
//! flow's estimator measures the line best, so [`floor`] gives every subscriber receiving less than
//! [`SMALL_FLOW`] of it at least what it receives plus its part of the room that estimator sees above
//! its own flow (within its share of the budget, where the caller applies it). When the line drops,
//! the largest flow's estimate falls below what it receives and nobody is lifted.
//!
//! Flows of about the same size (two county viewers of one consultation, who receive the same
//! adaptive layer and each other's audio) are as well informed as each other, and each estimator
//! reads the same line through its own noise: on county-512k the two swing between 90 and 265
//! kbit/s each, independently, while the line is a third empty. Their shared adaptive layer follows
//! the lower of the two, so it followed every dip of either. So among flows of about the same size
//! each is taken to see at least the mean view: what it receives plus the mean room their
//! estimators see above their own flows, unless one of them sees no room at all (its estimate is
//! below what it receives: the line is congested, and nobody is lifted).

use std::collections::{BTreeMap, BTreeSet};

use super::room::ParticipantId;

/// What one subscriber at the site would use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// The subscriber.
    pub subscriber: ParticipantId,
    /// Whether its consultation is an emergency.
    pub emergency: bool,
    /// Audio plus the lowest video layer (for a track sent as one adaptive layer: the room that puts
    /// it at its yield level), bit/s. See `allocator::Inputs::demand`.
    pub min_bps: u64,
    /// The most it can use (every track at its top layer; an adaptive layer: the room that puts it
    /// at its ceiling), bit/s.
    pub max_bps: u64,
}

/// A flow is small beside the largest one, and its estimate may be lifted, below this share of it.
pub const SMALL_FLOW: f64 = 0.5;

/// What one subscriber at a site tells of the line: its own estimate, and what the relay sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The subscriber.
    pub subscriber: ParticipantId,
    /// Its downlink estimate, bit/s.
    pub estimate_bps: u64,
    /// What the relay sends it (its allocation), bit/s.
    pub allocated_bps: u64,
}

/// The least `subscriber`'s estimate is taken to be on a line it shares with the others of
/// `readings` (see the module's doc). A small flow (under [`SMALL_FLOW`] of the largest): what it
/// receives plus an even part of the room the largest flow's estimator sees above that flow (its
/// estimate less what it receives). A flow of about the largest one's size: what it receives plus the
/// mean room the estimators of such flows see above theirs. `None` for a subscriber alone on the line
/// or without a reading, and while an estimator it is compared with sees no room (its estimate is
/// below what it receives: the line is congested).
pub fn floor(subscriber: ParticipantId, readings: &[Reading]) -> Option<u64> {
    if readings.len() < 2 {
        return None;
    }
    let largest = readings
        .iter()
        .max_by_key(|r| (r.allocated_bps, r.subscriber))?;
    let mine = readings.iter().find(|r| r.subscriber == subscriber)?;
    let small = |r: &Reading| (r.allocated_bps as f64) < largest.allocated_bps as f64 * SMALL_FLOW;
    let spare = |r: &Reading| r.estimate_bps.checked_sub(r.allocated_bps);
    if small(mine) {
        return Some(mine.allocated_bps + spare(largest)? / (readings.len() as u64 - 1));
    }
    let peers: Vec<&Reading> = readings.iter().filter(|r| !small(r)).collect();
    if peers.len() < 2 {
        return None;
    }
    let spares = peers.iter().map(|r| spare(r)).sum::<Option<u64>>()?;
    Some(mine.allocated_bps + spares / peers.len() as u64)
}

/// Split `budget_bps` into a cap per subscriber. Caps sum to at most the budget.
pub fn share(budget_bps: u64, demands: &[Demand]) -> BTreeMap<ParticipantId, u64> {
    let mut caps: BTreeMap<ParticipantId, u64> =
        demands.iter().map(|d| (d.subscriber, 0)).collect();
    let mut admitted = BTreeSet::new();
    let mut left = budget_bps;
    let tier = |emergency: bool| demands.iter().filter(move |d| d.emergency == emergency);
    // Minimums first, emergencies before the others, in order: whoever fits is admitted.
    for d in tier(true).chain(tier(false)) {
        let give = d.min_bps.min(d.max_bps).min(left);
        if give == d.min_bps.min(d.max_bps) {
            caps.insert(d.subscriber, give);
            admitted.insert(d.subscriber);
            left -= give;
        }
    }
    // Then water-fill the emergencies up to each one's maximum, and the others with the rest.
    for emergency in [true, false] {
        let fill: Vec<&Demand> = tier(emergency)
            .filter(|d| admitted.contains(&d.subscriber))
            .collect();
        left = water_fill(left, &fill, &mut caps);
    }
    // What nobody can use is shared evenly, so that a cap does not stop a probe beyond a stale maximum.
    if left > 0 && !demands.is_empty() {
        let each = left / demands.len() as u64;
        for cap in caps.values_mut() {
            *cap += each;
        }
    }
    caps
}

/// Raise the caps of the admitted `members` towards their maximum, evenly, with `left` bit/s. Returns what is left.
fn water_fill(mut left: u64, members: &[&Demand], caps: &mut BTreeMap<ParticipantId, u64>) -> u64 {
    loop {
        let hungry: Vec<&&Demand> = members
            .iter()
            .filter(|d| caps.get(&d.subscriber).is_some_and(|c| *c < d.max_bps))
            .collect();
        if hungry.is_empty() || left < hungry.len() as u64 {
            return left;
        }
        let each = left / hungry.len() as u64;
        for d in hungry {
            if let Some(cap) = caps.get_mut(&d.subscriber) {
                let give = each.min(d.max_bps - *cap);
                *cap += give;
                left -= give;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_is_floored_at_the_lines_reading() {
        let r = |id: u64, estimate_bps: u64, allocated_bps: u64| Reading {
            subscriber: ParticipantId(id),
            estimate_bps,
            allocated_bps,
        };
        // The emergency's viewer reads 1.3 Mbit/s where it receives 800 kbit/s: 500 kbit/s to spare.
        // The other's own estimate collapsed to 104 kbit/s; it is taken to have 600.
        let line = [r(1, 1_300_000, 800_000), r(2, 104_000, 100_000)];
        assert_eq!(floor(ParticipantId(2), &line), Some(600_000));
        assert_eq!(
            floor(ParticipantId(1), &line),
            None,
            "the largest flow keeps its own"
        );
        // Three on the line share the spare.
        let three = [line[0], line[1], r(3, 150_000, 100_000)];
        assert_eq!(floor(ParticipantId(3), &three), Some(350_000));
        // Two flows of about one size that both see room: each is taken to see at least the mean
        // room (the floor only lifts: the higher keeps its own estimate where it is above).
        let even = [r(1, 300_000, 130_000), r(2, 150_000, 120_000)];
        assert_eq!(floor(ParticipantId(2), &even), Some(120_000 + 100_000));
        assert_eq!(floor(ParticipantId(1), &even), Some(130_000 + 100_000));
        // One of them sees the line congested: nobody is lifted.
        let even = [r(1, 300_000, 130_000), r(2, 100_000, 120_000)];
        assert_eq!(floor(ParticipantId(2), &even), None);
        // Beside a small flow, the flows of about one size are compared among themselves.
        let mixed = [
            r(1, 500_000, 400_000),
            r(2, 350_000, 300_000),
            r(3, 60_000, 50_000),
        ];
        assert_eq!(floor(ParticipantId(2), &mixed), Some(300_000 + 75_000));
        assert_eq!(floor(ParticipantId(3), &mixed), Some(50_000 + 50_000));
        // The line dropped: the largest flow's estimate is below what it receives; nobody is lifted.
        let line = [r(1, 300_000, 800_000), r(2, 90_000, 100_000)];
        assert_eq!(floor(ParticipantId(2), &line), None);
        // Alone on its line, or unknown: no floor.
        assert_eq!(floor(ParticipantId(1), &line[..1]), None);
        assert_eq!(floor(ParticipantId(3), &line), None);
    }

    fn d(id: u64, emergency: bool, min_k: u64, max_k: u64) -> Demand {
        Demand {
            subscriber: ParticipantId(id),
            emergency,
            min_bps: min_k * 1000,
            max_bps: max_k * 1000,
        }
    }

    #[test]
    fn enough_for_everyone() {
        let caps = share(
            4_000_000,
            &[d(1, false, 190, 1_600), d(2, false, 190, 1_600)],
        );
        assert!(caps.values().all(|c| *c >= 1_600_000));
        assert!(caps.values().sum::<u64>() <= 4_000_000);
    }

    #[test]
    fn two_subscribers_share_evenly() {
        let caps = share(
            1_000_000,
            &[d(1, false, 190, 1_600), d(2, false, 190, 1_600)],
        );
        assert_eq!(caps[&ParticipantId(1)], 500_000);
        assert_eq!(caps[&ParticipantId(2)], 500_000);
    }

    #[test]
    fn emergency_first() {
        let caps = share(
            2_000_000,
            &[d(1, false, 190, 1_600), d(2, true, 190, 1_600)],
        );
        assert_eq!(
            caps[&ParticipantId(2)],
            1_600_000,
            "the emergency gets its top"
        );
        assert_eq!(caps[&ParticipantId(1)], 400_000, "the other yields");
        assert!(caps.values().sum::<u64>() <= 2_000_000);
    }

    #[test]
    fn an_emergency_that_could_use_the_whole_line_leaves_the_other_its_minimum() {
        // An adaptive layer's demand reaches past the line (3.1 Mbit/s on 2): the other consultation
        // keeps its minimum, the emergency takes the rest.
        let caps = share(
            2_000_000,
            &[d(1, false, 160, 3_160), d(2, true, 160, 3_160)],
        );
        assert_eq!(caps[&ParticipantId(1)], 160_000);
        assert_eq!(caps[&ParticipantId(2)], 1_840_000);
    }

    #[test]
    fn minimums_before_extras_and_whoever_does_not_fit_gets_nothing() {
        // 300 kbit/s: the emergency's minimum, then the other's 190 does not fit in the 110 left.
        let caps = share(300_000, &[d(1, false, 190, 1_600), d(2, true, 190, 1_600)]);
        assert_eq!(caps[&ParticipantId(1)], 0);
        assert_eq!(caps[&ParticipantId(2)], 300_000);
    }

    #[test]
    fn a_small_demand_leaves_the_rest_to_the_other() {
        let caps = share(1_000_000, &[d(1, false, 40, 40), d(2, false, 190, 1_600)]);
        assert!(caps[&ParticipantId(1)] >= 40_000);
        assert!(caps[&ParticipantId(2)] >= 900_000);
        assert!(caps.values().sum::<u64>() <= 1_000_000);
    }
}
