//! Line measurements: what `bandwidth-probe` (or the browser's line test) measured on a site's line,
//! as stored per site, and the checks on what a client posts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Millis;
use super::validate::Checker;

/// Highest capacity accepted (kbit/s): 100 Gbit/s.
pub const MAX_KBPS: f64 = 100_000_000.0;
/// Highest RTT or jitter accepted (ms).
pub const MAX_DELAY_MS: f64 = 60_000.0;
/// Longest measurement accepted (ms).
pub const MAX_ELAPSED_MS: f64 = 3_600_000.0;
/// Most bytes accepted per direction (1 TB).
pub const MAX_BYTES: f64 = 1e12;

/// Who ran a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasurementSource {
    /// `bandwidth-probe agent` (on a schedule).
    Agent,
    /// `bandwidth-probe measure --report`.
    Cli,
    /// The web client's line test.
    Browser,
}

impl MeasurementSource {
    /// All values.
    pub const ALL: [MeasurementSource; 3] = [
        MeasurementSource::Agent,
        MeasurementSource::Cli,
        MeasurementSource::Browser,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasurementSource::Agent => "agent",
            MeasurementSource::Cli => "cli",
            MeasurementSource::Browser => "browser",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<MeasurementSource> {
        MeasurementSource::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One stored measurement of a site's line. No clinical content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LineMeasurement {
    /// Identifier (UUID).
    pub id: String,
    /// The site whose line was measured.
    pub site: String,
    /// When the server stored it (Unix ms, server clock).
    pub measured_at: Millis,
    /// Who ran it.
    pub source: MeasurementSource,
    /// The user who posted it.
    pub measured_by: String,
    /// Bottleneck capacity server → site, kbit/s (what the relay sends to the site travels this way).
    pub down_kbps: f64,
    /// Bottleneck capacity site → server, kbit/s.
    pub up_kbps: f64,
    /// Smallest round-trip time, ms.
    pub rtt_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// Loss of the echoes, %.
    pub loss_pct: f64,
    /// Wall time of the measurement, ms.
    pub elapsed_ms: f64,
    /// Bytes the client sent.
    pub bytes_sent: u64,
    /// Bytes the client received.
    pub bytes_received: u64,
    /// The tool's confidence in the capacities (0–1), if it gave one.
    pub confidence: Option<f64>,
}

/// A measurement as a client posts it: the object `bandwidth-probe measure --json` prints, plus
/// `source`. Other fields the client adds are ignored. Every number is read as a JSON number and
/// checked by [`NewLineMeasurement::check`], so each bad or missing field is reported by name.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewLineMeasurement {
    /// Capacity server → site, kbit/s (0–100 000 000).
    pub down_kbps: Option<f64>,
    /// Capacity site → server, kbit/s (0–100 000 000; `down_kbps` or `up_kbps` above 0).
    pub up_kbps: Option<f64>,
    /// Smallest RTT, ms (0–60 000).
    pub rtt_ms: Option<f64>,
    /// Jitter, ms (0–60 000).
    pub jitter_ms: Option<f64>,
    /// Loss, % (0–100).
    pub loss_pct: Option<f64>,
    /// Wall time, ms (0–3 600 000).
    pub elapsed_ms: Option<f64>,
    /// Bytes the client sent (whole number, at most 10^12).
    pub bytes_sent: Option<f64>,
    /// Bytes the client received (whole number, at most 10^12).
    pub bytes_received: Option<f64>,
    /// Median RTT, ms (optional; checked, not stored).
    pub rtt_median_ms: Option<f64>,
    /// Confidence 0–1 (optional).
    pub confidence: Option<f64>,
    /// `agent`, `cli` (default) or `browser`.
    pub source: Option<String>,
    /// The site, if the client names it: must be the one in the path.
    pub site: Option<String>,
}

/// The checked values of a [`NewLineMeasurement`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedMeasurement {
    /// Capacity down, kbit/s.
    pub down_kbps: f64,
    /// Capacity up, kbit/s.
    pub up_kbps: f64,
    /// RTT, ms.
    pub rtt_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// Loss, %.
    pub loss_pct: f64,
    /// Wall time, ms.
    pub elapsed_ms: f64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Source.
    pub source: MeasurementSource,
}

impl CheckedMeasurement {
    /// The measurement to store.
    pub fn into_measurement(
        self,
        id: String,
        site: String,
        measured_at: Millis,
        measured_by: String,
    ) -> LineMeasurement {
        LineMeasurement {
            id,
            site,
            measured_at,
            source: self.source,
            measured_by,
            down_kbps: self.down_kbps,
            up_kbps: self.up_kbps,
            rtt_ms: self.rtt_ms,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
            elapsed_ms: self.elapsed_ms,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            confidence: self.confidence,
        }
    }
}

/// `value` is present, finite and within `0..=max`; records a field error otherwise.
fn number(c: &mut Checker, field: &str, value: Option<f64>, max: f64) -> f64 {
    match value {
        None => {
            c.fail(field, "required", format!("{field} is required"));
            0.0
        }
        Some(v) if !v.is_finite() || !(0.0..=max).contains(&v) => {
            c.fail(
                field,
                "invalid_value",
                format!("{field} must be a number from 0 to {max}"),
            );
            0.0
        }
        Some(v) => v,
    }
}

/// Like [`number`], and a whole number.
fn count(c: &mut Checker, field: &str, value: Option<f64>) -> u64 {
    let v = number(c, field, value, MAX_BYTES);
    if v.fract() != 0.0 {
        c.fail(
            field,
            "invalid_value",
            format!("{field} must be a whole number"),
        );
        return 0;
    }
    // In range (0..=1e12) and whole, so the conversion is exact.
    v as u64
}

impl NewLineMeasurement {
    /// Check every field for the site `site` (the path's); the values, or every bad field.
    pub fn check(
        &self,
        site: &str,
    ) -> Result<CheckedMeasurement, Vec<super::validate::FieldError>> {
        let mut c = Checker::new();
        let down_kbps = number(&mut c, "down_kbps", self.down_kbps, MAX_KBPS);
        let up_kbps = number(&mut c, "up_kbps", self.up_kbps, MAX_KBPS);
        let rtt_ms = number(&mut c, "rtt_ms", self.rtt_ms, MAX_DELAY_MS);
        let jitter_ms = number(&mut c, "jitter_ms", self.jitter_ms, MAX_DELAY_MS);
        let loss_pct = number(&mut c, "loss_pct", self.loss_pct, 100.0);
        let elapsed_ms = number(&mut c, "elapsed_ms", self.elapsed_ms, MAX_ELAPSED_MS);
        let bytes_sent = count(&mut c, "bytes_sent", self.bytes_sent);
        let bytes_received = count(&mut c, "bytes_received", self.bytes_received);
        if self.rtt_median_ms.is_some() {
            number(&mut c, "rtt_median_ms", self.rtt_median_ms, MAX_DELAY_MS);
        }
        let confidence = self
            .confidence
            .map(|v| number(&mut c, "confidence", Some(v), 1.0));
        if self.down_kbps.is_some_and(|v| v == 0.0) && self.up_kbps.is_some_and(|v| v == 0.0) {
            c.fail(
                "down_kbps",
                "invalid_value",
                "down_kbps or up_kbps must be above 0",
            );
        }
        let source = match self.source.as_deref() {
            None => MeasurementSource::Cli,
            Some(s) => MeasurementSource::parse(s).unwrap_or_else(|| {
                c.fail("source", "invalid_value", "source is agent, cli or browser");
                MeasurementSource::Cli
            }),
        };
        if let Some(s) = &self.site
            && s != site
        {
            c.fail(
                "site",
                "invalid_value",
                "the body's site differs from the path",
            );
        }
        c.finish()?;
        Ok(CheckedMeasurement {
            down_kbps,
            up_kbps,
            rtt_ms,
            jitter_ms,
            loss_pct,
            elapsed_ms,
            bytes_sent,
            bytes_received,
            confidence,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> NewLineMeasurement {
        NewLineMeasurement {
            down_kbps: Some(2000.5),
            up_kbps: Some(1000.0),
            rtt_ms: Some(40.0),
            jitter_ms: Some(1.5),
            loss_pct: Some(0.0),
            elapsed_ms: Some(1200.0),
            bytes_sent: Some(120_000.0),
            bytes_received: Some(250_000.0),
            rtt_median_ms: Some(42.0),
            confidence: Some(0.8),
            source: None,
            site: Some("county".into()),
        }
    }

    fn fields(m: &NewLineMeasurement) -> Vec<(String, &'static str)> {
        m.check("county")
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn a_good_measurement_passes_with_cli_as_default_source() {
        let c = good().check("county").unwrap();
        assert_eq!(c.source, MeasurementSource::Cli);
        assert_eq!(c.bytes_sent, 120_000);
        assert_eq!(c.confidence, Some(0.8));
        let m = c.into_measurement("id".into(), "county".into(), 5, "it".into());
        assert_eq!(m.down_kbps, 2000.5);
        assert_eq!(m.measured_by, "it");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut m = good();
        m.down_kbps = Some(-1.0);
        m.up_kbps = Some(MAX_KBPS * 2.0);
        m.rtt_ms = None;
        m.jitter_ms = Some(f64::INFINITY);
        m.loss_pct = Some(100.5);
        m.bytes_sent = Some(1.5);
        m.confidence = Some(2.0);
        m.source = Some("robot".into());
        m.site = Some("other".into());
        assert_eq!(
            fields(&m),
            [
                ("down_kbps".to_string(), "invalid_value"),
                ("up_kbps".to_string(), "invalid_value"),
                ("rtt_ms".to_string(), "required"),
                ("jitter_ms".to_string(), "invalid_value"),
                ("loss_pct".to_string(), "invalid_value"),
                ("bytes_sent".to_string(), "invalid_value"),
                ("confidence".to_string(), "invalid_value"),
                ("source".to_string(), "invalid_value"),
                ("site".to_string(), "invalid_value"),
            ]
        );
    }

    #[test]
    fn one_direction_must_be_above_zero() {
        let mut m = good();
        m.down_kbps = Some(0.0);
        assert!(m.check("county").is_ok(), "up alone is enough");
        m.up_kbps = Some(0.0);
        assert_eq!(fields(&m), [("down_kbps".to_string(), "invalid_value")]);
    }

    #[test]
    fn sources_round_trip() {
        for s in MeasurementSource::ALL {
            assert_eq!(MeasurementSource::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
        let mut m = good();
        m.source = Some("browser".into());
        assert_eq!(
            m.check("county").unwrap().source,
            MeasurementSource::Browser
        );
    }
}
