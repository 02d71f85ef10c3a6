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
use crate::domain::queue::QueueConfig;
use crate::domain::validate::Checker;
use crate::domain::{Site, SiteKind, Specialty};
use crate::store::StorageConfig;

/// One user account seeded into the store at start when the store has no user of that name (later
/// changes go through the operator API and are not overwritten by the file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub username: String,
    /// Argon2id PHC string (`telemed hash-password` prints one). Preferred.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Plain password, hashed when seeded. Only for demo and test configurations.
    #[serde(default)]
    pub password: Option<String>,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// The site the user works at.
    pub site: String,
    /// Specialties (specialists).
    #[serde(default)]
    pub specialties: Vec<String>,
}

/// Login tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a login token is valid (seconds).
    pub token_ttl_secs: u64,
    /// HMAC key for tokens (at least 32 characters). When absent, a random key is generated once
    /// and kept in the store, so tokens survive restarts and every node shares it.
    pub token_secret: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 12 * 3600,
            token_secret: None,
        }
    }
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

/// The embedded line-probe endpoint (`bandwidth-probe`'s UDP server).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Run it (default true).
    pub enabled: bool,
    /// UDP address it listens on (port 0 picks one).
    pub listen: SocketAddr,
    /// `host:port` clients are told to measure against (in `line-probe` answers). Default:
    /// `media.public_ip` with the probe's port when set, else the listen address.
    pub advertise: Option<String>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 3479)),
            advertise: None,
        }
    }
}

/// Whether `a` looks like `host:port` (a name or address, a port above 0; IPv6 in brackets).
pub fn host_port_ok(a: &str) -> bool {
    let Some((host, port)) = a.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    a.len() <= 255 && host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
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
    /// The line-probe endpoint.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// Storage backend.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Login tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Queue and pairing.
    #[serde(default)]
    pub workflow: QueueConfig,
    /// Specialties.
    #[serde(default)]
    pub specialties: Vec<Specialty>,
    /// Sites seeded into the store at start (the file wins for sites it lists).
    #[serde(default)]
    pub sites: Vec<Site>,
    /// Users seeded into the store at start when absent.
    #[serde(default)]
    pub users: Vec<UserConfig>,
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
        let mut c = Checker::new();
        let mut seen = std::collections::HashSet::new();
        for sp in &self.specialties {
            c.ident("specialties.id", &sp.id, 32);
            c.text("specialties.name_zh", &sp.name_zh, 1, 64);
            c.text("specialties.name_en", &sp.name_en, 1, 64);
            if !seen.insert(sp.id.as_str()) {
                c.fail(
                    "specialties.id",
                    "invalid_value",
                    format!("specialty {:?} appears twice", sp.id),
                );
            }
        }
        let mut sites = std::collections::HashMap::new();
        for site in &self.sites {
            c.ident("sites.id", &site.id, 32);
            c.text("sites.name", &site.name, 1, 128);
            c.text("sites.region", &site.region, 0, 128);
            if site.line_capacity_kbps == 0 {
                c.fail(
                    "sites.line_capacity_kbps",
                    "invalid_value",
                    format!("site {:?}: line capacity must be above 0", site.id),
                );
            }
            if sites.insert(site.id.as_str(), site.kind).is_some() {
                c.fail(
                    "sites.id",
                    "invalid_value",
                    format!("site {:?} appears twice", site.id),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.users {
            c.ident("users.username", &u.username, 64);
            c.text("users.display_name", &u.display_name, 1, 128);
            if !names.insert(u.username.as_str()) {
                c.fail(
                    "users.username",
                    "invalid_value",
                    format!("user {:?} appears twice", u.username),
                );
            }
            match (&u.password, &u.password_hash) {
                (Some(p), None) => c.password("users.password", p),
                (None, Some(h)) if h.starts_with("$argon2") => {}
                (None, Some(_)) => c.fail(
                    "users.password_hash",
                    "invalid_format",
                    format!(
                        "user {:?}: password_hash must be an Argon2 PHC string",
                        u.username
                    ),
                ),
                _ => c.fail(
                    "users.password",
                    "required",
                    format!(
                        "user {:?} needs exactly one of password or password_hash",
                        u.username
                    ),
                ),
            }
            match sites.get(u.site.as_str()) {
                None => c.fail(
                    "users.site",
                    "unknown_reference",
                    format!("user {:?}: unknown site {:?}", u.username, u.site),
                ),
                Some(kind) => {
                    let fits = match u.role {
                        Role::Specialist => *kind == SiteKind::SpecialistCentre,
                        Role::ReferringDoctor => kind.refers(),
                        Role::ItAdmin | Role::Operator => true,
                    };
                    if !fits {
                        c.fail(
                            "users.site",
                            "invalid_value",
                            format!(
                                "user {:?}: a {:?} cannot work at a {:?}",
                                u.username, u.role, kind
                            ),
                        );
                    }
                }
            }
            if u.role == Role::Specialist && u.specialties.is_empty() {
                c.fail(
                    "users.specialties",
                    "required",
                    format!("specialist {:?} needs at least one specialty", u.username),
                );
            }
            for sp in &u.specialties {
                if !self.specialties.iter().any(|s| s.id == *sp) {
                    c.fail(
                        "users.specialties",
                        "unknown_reference",
                        format!("user {:?}: unknown specialty {sp:?}", u.username),
                    );
                }
            }
        }
        if let Some(secret) = &self.auth.token_secret
            && secret.len() < 32
        {
            c.fail(
                "auth.token_secret",
                "too_short",
                "auth.token_secret needs at least 32 characters",
            );
        }
        if self.auth.token_ttl_secs < 60 || self.auth.token_ttl_secs > 30 * 86400 {
            c.fail(
                "auth.token_ttl_secs",
                "invalid_value",
                "auth.token_ttl_secs must be 60 to 2592000",
            );
        }
        let w = &self.workflow;
        if w.offer_timeout_secs < 10
            || w.default_consultation_secs == 0
            || w.max_wait_emergency_secs == 0
            || w.max_wait_urgent_secs == 0
            || w.max_wait_routine_secs == 0
            || w.preferred_centre_wait_secs > 7 * 86400
        {
            c.fail(
                "workflow",
                "invalid_value",
                "workflow: offer_timeout_secs must be at least 10, every wait above 0, and preferred_centre_wait_secs at most a week",
            );
        }
        for u in self
            .users
            .iter()
            .filter(|u| u.role != Role::Specialist && !u.specialties.is_empty())
        {
            c.fail(
                "users.specialties",
                "invalid_value",
                format!("user {:?}: only specialists have specialties", u.username),
            );
        }
        if let Err(errors) = c.finish() {
            let text: Vec<String> = errors.into_iter().map(|e| e.message).collect();
            return Err(ConfigError::Invalid(text.join("; ")));
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
        let p = &self.probe;
        if p.enabled {
            if let Some(a) = &p.advertise
                && !host_port_ok(a)
            {
                return Err(ConfigError::Invalid(
                    "probe.advertise must be host:port (a name or an address, IPv6 in brackets)"
                        .into(),
                ));
            }
            if p.listen.ip().is_unspecified() && p.advertise.is_none() && m.public_ip.is_none() {
                return Err(ConfigError::Invalid(
                    "probe listens on an unspecified address (0.0.0.0 or ::): set probe.advertise / --probe-advertise or media.public_ip to the address clients reach"
                        .into(),
                ));
            }
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
        assert!(c.users.len() >= 6);
        assert!(c.sites.len() >= 4);
        assert!(c.specialties.len() >= 3);
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
        let site = "[[sites]]\nid='c'\nname='C'\nkind='county_hospital'\nregion='R'\nline_capacity_kbps=1000\n";
        let user = |name: &str| {
            format!(
                "[[users]]\nusername='{name}'\npassword='long-enough'\ndisplay_name='A'\nrole='referring_doctor'\nsite='c'\n"
            )
        };
        assert!(Config::parse(&format!("{site}{}", user("a"))).is_ok());
        let dup = format!("{site}{}{}", user("a"), user("a"));
        let err = Config::parse(&dup).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
        let err = Config::parse(&user("a")).unwrap_err().to_string();
        assert!(err.contains("unknown site"), "{err}");
        let spec = format!(
            "{site}[[users]]\nusername='s'\npassword='long-enough'\ndisplay_name='S'\nrole='specialist'\nsite='c'\n"
        );
        let err = Config::parse(&spec).unwrap_err().to_string();
        assert!(
            err.contains("cannot work at") && err.contains("at least one specialty"),
            "{err}"
        );
        let open = "[media]\nudp_listen='0.0.0.0:10000'\n";
        let err = Config::parse(open).unwrap_err().to_string();
        assert!(err.contains("public_ip"), "{err}");
    }

    #[test]
    fn remb_is_off_unless_asked_for() {
        assert!(!Config::parse(DEMO_CONFIG).unwrap().media.remb);
        assert!(Config::parse("[media]\nremb = true\n").unwrap().media.remb);
        assert!(matches!(
            Config::parse("[media]\nremb = 'fast'\n"),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn probe_section() {
        let c = Config::parse(DEMO_CONFIG).unwrap();
        assert!(c.probe.enabled);
        assert!(c.probe.listen.ip().is_loopback());
        let open = "[probe]\nlisten='0.0.0.0:3479'\n";
        let err = Config::parse(open).unwrap_err().to_string();
        assert!(err.contains("probe.advertise"), "{err}");
        assert!(Config::parse(&format!("{open}advertise='probe.example.cn:3479'\n")).is_ok());
        let with_ip = "[media]\npublic_ip='203.0.113.10'\n[probe]\nlisten='0.0.0.0:3479'\n";
        assert!(Config::parse(with_ip).is_ok());
        assert!(Config::parse("[probe]\nenabled=false\nlisten='0.0.0.0:3479'\n").is_ok());
        let bad = "[probe]\nadvertise='no port'\n";
        assert!(Config::parse(bad).is_err());
        assert!(Config::parse("[probe]\nbogus=1\n").is_err());
        for ok in ["h:1", "10.0.0.1:3479", "[::1]:3479", "a-b.c:65535"] {
            assert!(host_port_ok(ok), "{ok}");
        }
        for bad in ["h", ":1", "h:0", "h:70000", "[::1:3479", "a b:1", "h:port"] {
            assert!(!host_port_ok(bad), "{bad}");
        }
    }
}
