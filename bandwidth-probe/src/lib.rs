//! placeholder
pub mod estimator;
pub mod server;
pub mod token;
pub mod wire;
