//! The line budgets of the sites, shared by the workers.
//!
//! One site's consultations may sit on different workers, so the budget board is shared: every worker
//! posts the demand of each of its subscribers at a site a few times a second and reads back that
//! subscriber's cap, which [`crate::core::line_budget::share`] computes from all posted demands.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use crate::core::line_budget::{Demand, Reading, floor, share};
use crate::core::room::ParticipantId;

#[derive(Debug, Default)]
struct Site {
    budget_bps: Option<u64>,
    demands: BTreeMap<ParticipantId, Demand>,
    /// What each subscriber was allocated last, bit/s.
    allocated: BTreeMap<ParticipantId, u64>,
    /// Each subscriber's own downlink estimate, bit/s.
    estimates: BTreeMap<ParticipantId, u64>,
}

/// What a subscriber at a site gets back for its post.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Posted {
    /// Its cap: its share of the site's budget, when the site has one.
    pub cap_bps: Option<u64>,
    /// The least its estimate is taken to be on the site's shared line (see
    /// [`crate::core::line_budget::floor`]), within its cap.
    pub floor_bps: Option<u64>,
}

/// One site's budget and use, for the IT view and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteBudget {
    /// The site id.
    pub site: String,
    /// Its line budget, bit/s; none when unknown.
    pub budget_bps: Option<u64>,
    /// What the relay sends to its subscribers now (their allocations), bit/s.
    pub allocated_bps: u64,
    /// Its subscribers on the relay.
    pub subscribers: usize,
    /// Of which in emergency consultations.
    pub emergency_subscribers: usize,
}

/// The budgets of all sites.
#[derive(Debug, Default)]
pub struct LineBudgets {
    sites: Mutex<HashMap<String, Site>>,
}

impl LineBudgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Site>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set (or with `None` forget) a site's line budget: its configured capacity or its latest line
    /// measurement.
    pub fn set_budget(&self, site: &str, budget_bps: Option<u64>) {
        self.lock().entry(site.to_string()).or_default().budget_bps = budget_bps;
    }

    /// Post a subscriber's demand, its current allocation and its own estimate; returns its cap
    /// when the site has a budget, and its floor on the shared line.
    pub fn post(
        &self,
        site: &str,
        demand: Demand,
        allocated_bps: u64,
        estimate_bps: u64,
    ) -> Posted {
        let mut sites = self.lock();
        let entry = sites.entry(site.to_string()).or_default();
        let id = demand.subscriber;
        entry.demands.insert(id, demand);
        entry.allocated.insert(id, allocated_bps);
        entry.estimates.insert(id, estimate_bps);
        let cap_bps = entry.budget_bps.and_then(|budget| {
            let demands: Vec<Demand> = entry.demands.values().copied().collect();
            share(budget, &demands).get(&id).copied()
        });
        let readings: Vec<Reading> = entry
            .estimates
            .iter()
            .map(|(s, e)| Reading {
                subscriber: *s,
                estimate_bps: *e,
                allocated_bps: entry.allocated.get(s).copied().unwrap_or(0),
            })
            .collect();
        let floor_bps = floor(id, &readings).map(|f| cap_bps.map_or(f, |c| f.min(c)));
        Posted { cap_bps, floor_bps }
    }

    /// Whether more than one subscriber on this relay shares the site's line.
    pub fn shared(&self, site: &str) -> bool {
        self.lock().get(site).is_some_and(|s| s.demands.len() > 1)
    }

    /// A subscriber left.
    pub fn remove(&self, site: &str, subscriber: ParticipantId) {
        if let Some(s) = self.lock().get_mut(site) {
            s.demands.remove(&subscriber);
            s.allocated.remove(&subscriber);
            s.estimates.remove(&subscriber);
        }
    }

    /// Every site's budget and use.
    pub fn snapshot(&self) -> Vec<SiteBudget> {
        let mut out: Vec<SiteBudget> = self
            .lock()
            .iter()
            .map(|(site, s)| SiteBudget {
                site: site.clone(),
                budget_bps: s.budget_bps,
                allocated_bps: s.allocated.values().sum(),
                subscribers: s.demands.len(),
                emergency_subscribers: s.demands.values().filter(|d| d.emergency).count(),
            })
            .collect();
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(id: u64, emergency: bool) -> Demand {
        Demand {
            subscriber: ParticipantId(id),
            emergency,
            min_bps: 190_000,
            max_bps: 1_600_000,
        }
    }

    #[test]
    fn subscribers_of_one_site_share_its_budget() {
        let b = LineBudgets::default();
        let cap = |p: Posted| p.cap_bps;
        assert_eq!(
            cap(b.post("county", demand(1, false), 0, 0)),
            None,
            "no budget yet"
        );
        b.set_budget("county", Some(2_000_000));
        assert_eq!(
            cap(b.post("county", demand(1, false), 0, 0)),
            Some(2_000_000)
        );
        let emergency = cap(b.post("county", demand(2, true), 0, 0)).unwrap();
        let other = cap(b.post("county", demand(1, false), 0, 0)).unwrap();
        assert_eq!(emergency, 1_600_000);
        assert_eq!(other, 400_000);
        // Another site is separate.
        b.set_budget("township", Some(512_000));
        assert_eq!(
            cap(b.post("township", demand(3, false), 0, 0)),
            Some(512_000)
        );
        b.remove("county", ParticipantId(2));
        assert!(cap(b.post("county", demand(1, false), 100, 0)).unwrap() >= 1_600_000);
        let snap = b.snapshot();
        assert_eq!(snap[0].site, "county");
        assert_eq!(snap[0].subscribers, 1);
        assert_eq!(snap[0].allocated_bps, 100);
    }

    #[test]
    fn a_small_flow_is_floored_by_the_largest_flows_spare_within_its_cap() {
        let b = LineBudgets::default();
        b.set_budget("county", Some(2_000_000));
        // The emergency's viewer receives 800 kbit/s and estimates 1.3 Mbit/s.
        let p = b.post("county", demand(2, true), 800_000, 1_300_000);
        assert_eq!(
            p.floor_bps, None,
            "alone, then the largest flow: its own estimate"
        );
        // The other's estimate collapsed to 104 kbit/s beside it: floored at 100 + 500 kbit/s, but
        // no higher than its cap (400 kbit/s: the emergency's demand comes first).
        let p = b.post("county", demand(1, false), 100_000, 104_000);
        assert_eq!(p.cap_bps, Some(400_000));
        assert_eq!(p.floor_bps, Some(400_000));
        // Without a budget the floor stands alone.
        let p = b.post("township", demand(3, false), 800_000, 1_300_000);
        assert_eq!(p, Posted::default());
        let p = b.post("township", demand(4, false), 100_000, 104_000);
        assert_eq!(p.floor_bps, Some(600_000));
        b.remove("township", ParticipantId(3));
        assert_eq!(
            b.post("township", demand(4, false), 100_000, 104_000)
                .floor_bps,
            None
        );
    }
}
