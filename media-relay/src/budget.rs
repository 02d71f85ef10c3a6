//! The line budgets of the sites, shared by the workers.
//!
//! One site's consultations may sit on different workers, so the budget board is shared: every worker
//! posts the demand of each of its subscribers at a site a few times a second and reads back that
//! subscriber's cap, which [`crate::core::line_budget::share`] computes from all posted demands.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use crate::core::line_budget::{Demand, share};
use crate::core::room::ParticipantId;

#[derive(Debug, Default)]
struct Site {
    budget_bps: Option<u64>,
    demands: BTreeMap<ParticipantId, Demand>,
    /// What each subscriber was allocated last, bit/s.
    allocated: BTreeMap<ParticipantId, u64>,
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

    /// Post a subscriber's demand and its current allocation; returns its cap when the site has a
    /// budget.
    pub fn post(&self, site: &str, demand: Demand, allocated_bps: u64) -> Option<u64> {
        let mut sites = self.lock();
        let entry = sites.entry(site.to_string()).or_default();
        entry.demands.insert(demand.subscriber, demand);
        entry.allocated.insert(demand.subscriber, allocated_bps);
        let budget = entry.budget_bps?;
        let demands: Vec<Demand> = entry.demands.values().copied().collect();
        share(budget, &demands).get(&demand.subscriber).copied()
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
        assert_eq!(b.post("county", demand(1, false), 0), None, "no budget yet");
        b.set_budget("county", Some(2_000_000));
        assert_eq!(b.post("county", demand(1, false), 0), Some(2_000_000));
        let emergency = b.post("county", demand(2, true), 0).unwrap();
        let other = b.post("county", demand(1, false), 0).unwrap();
        assert_eq!(emergency, 1_600_000);
        assert_eq!(other, 400_000);
        // Another site is separate.
        b.set_budget("township", Some(512_000));
        assert_eq!(b.post("township", demand(3, false), 0), Some(512_000));
        b.remove("county", ParticipantId(2));
        assert!(b.post("county", demand(1, false), 100).unwrap() >= 1_600_000);
        let snap = b.snapshot();
        assert_eq!(snap[0].site, "county");
        assert_eq!(snap[0].subscribers, 1);
        assert_eq!(snap[0].allocated_bps, 100);
    }
}
