//! `loadtest bwe`: the bandwidth-adaptation benchmark. A real `telemed` carries consultations
//! between specialist bots (simulcast VP8 and Opus from the east) and county doctor bots behind
//! the link emulator, on a [`Scenario`]'s line; [`analysis`] turns what the county received and
//! what the line did into the report (`docs/loadtest.md`).

pub mod analysis;
pub mod plot;
pub mod run;
pub mod scenario;

pub use analysis::{BweReport, analyse};
pub use run::{BweError, BweOptions, BweOutcome, run};
pub use scenario::{NAMES, Scenario, ScenarioError};
