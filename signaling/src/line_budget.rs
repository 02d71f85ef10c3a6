//! The relay's line budget per site: the latest line measurement's downlink (what the relay sends
//! to a site travels that site's downlink) when there is one, else the site's configured capacity.
//!
//! [`choose`] is the rule; [`refresh_site`] applies it to one site at once (after a measurement is
//! stored on this node or a site is changed), [`refresh_all`] to every site in the store, and
//! [`run`] does that every [`REFRESH_EVERY`], so several nodes behind one Redis converge on the
//! measurements any of them stored.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Site;
use crate::domain::line::LineMeasurement;
use crate::store::{Store, StoreError};

/// How often [`run`] refreshes every budget from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Where a site's budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetSource {
    /// The latest line measurement's `down_kbps`.
    Measured,
    /// The site's `line_capacity_kbps`.
    Configured,
}

/// A site's line budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineBudget {
    /// Bit/s.
    pub bps: u64,
    /// Where it comes from.
    pub source: BudgetSource,
}

impl LineBudget {
    /// The budget in kbit/s.
    pub fn kbps(&self) -> f64 {
        self.bps as f64 / 1000.0
    }
}

/// The budget of `site` given its latest measurement: the measured downlink when there is one and
/// it is above 0 (a measurement of the uplink alone says nothing about the downlink), else the
/// configured capacity.
pub fn choose(site: &Site, latest: Option<&LineMeasurement>) -> LineBudget {
    match latest {
        Some(m) if m.down_kbps.is_finite() && m.down_kbps > 0.0 => LineBudget {
            // Checked on input: at most 1e8 kbit/s, so this fits.
            bps: (m.down_kbps * 1000.0).round() as u64,
            source: BudgetSource::Measured,
        },
        _ => LineBudget {
            bps: u64::from(site.line_capacity_kbps) * 1000,
            source: BudgetSource::Configured,
        },
    }
}

/// Where budgets go (the relay; a recorder in tests).
pub trait BudgetSink: Send + Sync {
    /// Set a site's budget.
    fn set_site_budget(&self, site: &str, budget_bps: Option<u64>);
}

impl BudgetSink for media_relay::Relay {
    fn set_site_budget(&self, site: &str, budget_bps: Option<u64>) {
        media_relay::Relay::set_site_budget(self, site, budget_bps);
    }
}

/// Apply the rule to `site` now; returns the budget set.
pub async fn refresh_site(
    store: &dyn Store,
    sink: &dyn BudgetSink,
    site: &Site,
) -> Result<LineBudget, StoreError> {
    let latest = store.latest_line_measurement(&site.id).await?;
    let budget = choose(site, latest.as_ref());
    sink.set_site_budget(&site.id, Some(budget.bps));
    Ok(budget)
}

/// Apply the rule to every site in the store; returns how many were set.
pub async fn refresh_all(store: &dyn Store, sink: &dyn BudgetSink) -> Result<usize, StoreError> {
    let sites = store.list_sites().await?;
    for site in &sites {
        refresh_site(store, sink, site).await?;
    }
    Ok(sites.len())
}

/// Refresh every budget at once and then every `every`, forever (abort the task to stop it). A
/// failed refresh is logged and tried again at the next tick.
pub async fn run(store: Arc<dyn Store>, sink: Arc<dyn BudgetSink>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = refresh_all(store.as_ref(), sink.as_ref()).await {
            tracing::warn!(error = %e, "refreshing line budgets failed; trying again later");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::domain::SiteKind;
    use crate::domain::line::MeasurementSource;
    use crate::store::sqlite::SqliteStore;

    fn site(id: &str, kbps: u32) -> Site {
        Site {
            id: id.into(),
            name: id.into(),
            kind: SiteKind::CountyHospital,
            region: String::new(),
            line_capacity_kbps: kbps,
        }
    }

    fn measured(site: &str, down_kbps: f64, at: i64) -> LineMeasurement {
        LineMeasurement {
            id: format!("{site}-{at}"),
            site: site.into(),
            measured_at: at,
            source: MeasurementSource::Agent,
            measured_by: "it".into(),
            down_kbps,
            up_kbps: 800.0,
            rtt_ms: 30.0,
            jitter_ms: 1.0,
            loss_pct: 0.0,
            elapsed_ms: 900.0,
            bytes_sent: 1,
            bytes_received: 2,
            confidence: None,
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<HashMap<String, Option<u64>>>);

    impl BudgetSink for Recorder {
        fn set_site_budget(&self, site: &str, budget_bps: Option<u64>) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(site.into(), budget_bps);
        }
    }

    impl Recorder {
        fn get(&self, site: &str) -> Option<u64> {
            self.0.lock().unwrap().get(site).copied().flatten()
        }
    }

    #[test]
    fn the_measured_downlink_wins_over_the_configured_capacity() {
        let s = site("c", 2000);
        assert_eq!(
            choose(&s, None),
            LineBudget {
                bps: 2_000_000,
                source: BudgetSource::Configured
            }
        );
        let m = measured("c", 1234.5678, 1);
        assert_eq!(
            choose(&s, Some(&m)),
            LineBudget {
                bps: 1_234_568,
                source: BudgetSource::Measured
            }
        );
        assert_eq!(choose(&s, Some(&m)).kbps(), 1234.568);
        // Only the uplink measured: the configured capacity stays.
        let up_only = measured("c", 0.0, 2);
        assert_eq!(choose(&s, Some(&up_only)).source, BudgetSource::Configured);
    }

    #[tokio::test]
    async fn refresh_covers_every_stored_site_and_follows_new_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("t.sqlite3"))
                .await
                .unwrap(),
        );
        store.put_site(&site("a", 2000)).await.unwrap();
        store.put_site(&site("b", 512)).await.unwrap();
        store
            .add_line_measurement(&measured("a", 1500.0, 1))
            .await
            .unwrap();
        let sink = Recorder::default();
        assert_eq!(refresh_all(store.as_ref(), &sink).await.unwrap(), 2);
        assert_eq!(sink.get("a"), Some(1_500_000));
        assert_eq!(sink.get("b"), Some(512_000));

        // The newest measurement counts.
        store
            .add_line_measurement(&measured("a", 900.0, 2))
            .await
            .unwrap();
        let b = refresh_site(store.as_ref(), &sink, &site("a", 2000))
            .await
            .unwrap();
        assert_eq!(b.source, BudgetSource::Measured);
        assert_eq!(sink.get("a"), Some(900_000));
    }

    #[tokio::test]
    async fn the_task_picks_up_measurements_stored_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("t.sqlite3"))
                .await
                .unwrap(),
        );
        store.put_site(&site("a", 2000)).await.unwrap();
        let sink = Arc::new(Recorder::default());
        let task = tokio::spawn(run(store.clone(), sink.clone(), Duration::from_millis(10)));
        // Waits for an outcome, not for a time: the deadline only ends a broken test.
        let wait_for = |want: u64| {
            let sink = sink.clone();
            async move {
                for _ in 0..1000 {
                    if sink.get("a") == Some(want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("budget of a never became {want}: {:?}", sink.get("a"));
            }
        };
        wait_for(2_000_000).await;
        // Another node stores a measurement in the shared store.
        store
            .add_line_measurement(&measured("a", 700.0, 1))
            .await
            .unwrap();
        wait_for(700_000).await;
        task.abort();
    }
}
