//! Server configuration: a TOML file (the embedded demo one by default), overridden by command-line
//! flags and their `TELEMED_*` environment variables.

use std::net::SocketAddr;
use std::path::Path;

use media_relay::RelayConfig;
use serde::Deserialize;

/// The demo configuration compiled into the binary.
pub const DEMO_CONFIG: &str = include_str!("../demo.toml");

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("{0} is larger than 1 MiB")]
    TooLarge(String),
    /// The TOML is malformed.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

pub use crate::domain::Role;

/// One user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Password (demo configuration only; hashed accounts come with the workflow).
    pub password: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Directory of the built web client.
    pub web_root: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            web_root: "web-client/dist".into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP.
    #[serde(default)]
    pub server: ServerConfig,
    /// Media relay.
    #[serde(default)]
    pub media: RelayConfig,
    /// Users.
    #[serde(default)]
    pub users: Vec<User>,
}

impl Config {
    /// Parse and check a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Read a configuration file, or the demo configuration when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::parse(DEMO_CONFIG);
        };
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge(shown));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown,
            source,
        })?;
        Config::parse(&text)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            if u.username.is_empty() || u.username.chars().count() > 64 {
                return Err(ConfigError::Invalid(format!(
                    "user name {:?} must be 1 to 64 characters",
                    u.username
                )));
            }
            if u.password.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "user {:?} has an empty password",
                    u.username
                )));
            }
            if !seen.insert(u.username.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "user {:?} appears twice",
                    u.username
                )));
            }
        }
        let m = &self.media;
        if m.max_participants_per_room == 0 || m.max_participants_per_room > 64 {
            return Err(ConfigError::Invalid(
                "media.max_participants_per_room must be 1 to 64".into(),
            ));
        }
        if m.ice_timeout_secs == 0 || m.ice_timeout_secs > 300 {
            return Err(ConfigError::Invalid(
                "media.ice_timeout_secs must be 1 to 300".into(),
            ));
        }
        if m.workers > 256 {
            return Err(ConfigError::Invalid(
                "media.workers must be at most 256".into(),
            ));
        }
        if m.udp_listen.is_none() && m.tcp_listen.is_none() {
            return Err(ConfigError::Invalid(
                "media needs a UDP or a TCP port".into(),
            ));
        }
        let unspecified = [m.udp_listen, m.tcp_listen]
            .into_iter()
            .flatten()
            .any(|a| a.ip().is_unspecified());
        if unspecified && m.public_ip.is_none() {
            return Err(ConfigError::Invalid(
                "media listens on an unspecified address (0.0.0.0 or ::): set media.public_ip / --public-ip to the address browsers reach"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Check a configuration again after command-line overrides.
    pub fn revalidate(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_parses() {
        let c = Config::parse(DEMO_CONFIG).unwrap();
        assert!(c.users.len() >= 2);
        assert_eq!(c.server.listen.port(), 8080);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        assert!(matches!(
            Config::parse("[server]\nlisten = 5"),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            Config::parse("[nonsense]\n"),
            Err(ConfigError::Parse(_))
        ));
        let dup = "[[users]]\nusername='a'\npassword='x'\ndisplay_name='A'\nrole='specialist'\n\
                   [[users]]\nusername='a'\npassword='y'\ndisplay_name='B'\nrole='specialist'\n";
        assert!(matches!(Config::parse(dup), Err(ConfigError::Invalid(_))));
        let open = "[media]\nudp_listen='0.0.0.0:10000'\n";
        let err = Config::parse(open).unwrap_err().to_string();
        assert!(err.contains("public_ip"), "{err}");
    }
}
