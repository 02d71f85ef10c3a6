//! Probe tokens: who may measure, how many bytes, until when.
//!
//! A token is `bp1.<payload>.<mac>`, both parts base64url (no padding): the payload is a small JSON
//! object ([`Claims`]) with the site id, the byte budget, the expiry (Unix ms) and a random nonce;
//! the MAC is HMAC-SHA256 over `bp1.<payload>` with the server's secret. The same style as the
//! login tokens of `signaling::auth`.
//!
//! A token is good for one measurement: the probe server remembers the nonce of every token it
//! has accepted until that token expires ([`NonceCache`], bounded), so a captured token cannot be
//! used again.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Unix time in milliseconds.
pub type Millis = u64;

/// Errors from token checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, or the signature does not match.
    #[error("the probe token is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("the probe token has expired; ask for a new one")]
    Expired,
}

/// Errors issuing a token.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The site id is longer than [`MAX_SITE_LEN`] bytes.
    #[error("the site id is longer than {MAX_SITE_LEN} bytes")]
    SiteTooLong,
    /// The operating system gave no random bytes.
    #[error("no random bytes for the token nonce: {0}")]
    Random(String),
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Site id (may be empty).
    pub site: String,
    /// Most bytes the server sends (and accepts) for this measurement.
    pub budget: u64,
    /// Expires (Unix ms).
    pub exp: Millis,
    /// 16 random bytes, base64url: makes the token unique, so it can be used once.
    pub nonce: String,
}

impl Claims {
    /// The nonce as bytes (all zero when malformed; a verified token always has a good one).
    pub fn nonce_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(v) = URL_SAFE_NO_PAD.decode(&self.nonce)
            && v.len() == 16
        {
            out.copy_from_slice(&v);
        }
        out
    }
}

/// Longest token accepted (a real one is about 150 bytes).
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest site id in a token.
pub const MAX_SITE_LEN: usize = 128;
/// Prefix (format version) of every token.
const PREFIX: &str = "bp1.";

/// A signed token: `<prefix><payload>.<mac>`, the payload `claims` as JSON in base64url, the MAC
/// HMAC-SHA256 with `key` over `<prefix><payload>`, base64url. Probe tokens and `signaling`'s login
/// tokens are both made this way (with their own prefix and claims).
pub fn seal<T: Serialize>(key: &[u8], prefix: &str, claims: &T) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{prefix}{payload}");
    let tag = URL_SAFE_NO_PAD.encode(
        crate::wire::hmac_with(key, signed.as_bytes())
            .finalize()
            .into_bytes(),
    );
    format!("{signed}.{tag}")
}

/// The claims of a token made by [`seal`] with `key` and `prefix`; `None` when it is longer than
/// `max_len`, malformed, or its MAC does not match. (Expiry is the caller's to check.)
pub fn open<T: DeserializeOwned>(
    key: &[u8],
    prefix: &str,
    token: &str,
    max_len: usize,
) -> Option<T> {
    if token.len() > max_len {
        return None;
    }
    let (signed, tag) = token.rsplit_once('.')?;
    let payload = signed.strip_prefix(prefix)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    crate::wire::hmac_with(key, signed.as_bytes())
        .verify_slice(&tag)
        .ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Signs and checks probe tokens with one secret.
#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from secret bytes (use at least 32 random bytes).
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey {
            key: secret.to_vec(),
        }
    }

    /// A signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        seal(&self.key, PREFIX, claims)
    }

    /// A new one-use token for `site` allowing `budget_bytes`, valid for `ttl` from `now` (Unix
    /// ms), with a fresh random nonce.
    pub fn issue(
        &self,
        site: &str,
        budget_bytes: u64,
        ttl: Duration,
        now: Millis,
    ) -> Result<String, IssueError> {
        if site.len() > MAX_SITE_LEN {
            return Err(IssueError::SiteTooLong);
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| IssueError::Random(e.to_string()))?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Ok(self.sign(&Claims {
            site: site.to_string(),
            budget: budget_bytes,
            exp: now.saturating_add(ttl_ms),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
        }))
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: Millis) -> Result<Claims, TokenError> {
        let claims: Claims =
            open(&self.key, PREFIX, token, MAX_TOKEN_LEN).ok_or(TokenError::Invalid)?;
        let nonce_ok = URL_SAFE_NO_PAD
            .decode(&claims.nonce)
            .is_ok_and(|n| n.len() == 16);
        if !nonce_ok || claims.site.len() > MAX_SITE_LEN {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The nonces of tokens already used, each kept until its token expires; at most `capacity`.
#[derive(Debug)]
pub struct NonceCache {
    seen: HashMap<[u8; 16], Millis>,
    capacity: usize,
}

/// Why a nonce was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    /// The token was used before.
    Reused,
    /// The cache is full of live tokens.
    Full,
}

impl NonceCache {
    /// An empty cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache {
            seen: HashMap::new(),
            capacity,
        }
    }

    /// Records `nonce` (of a token expiring at `exp`) as used; refuses one seen before.
    pub fn take(&mut self, nonce: [u8; 16], exp: Millis, now: Millis) -> Result<(), NonceRefusal> {
        if let Some(&until) = self.seen.get(&nonce)
            && until > now
        {
            return Err(NonceRefusal::Reused);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, until| *until > now);
            if self.seen.len() >= self.capacity {
                return Err(NonceRefusal::Full);
            }
        }
        self.seen.insert(nonce, exp);
        Ok(())
    }

    /// Live nonces held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_round_trip_and_expire() {
        let key = TokenKey::new(KEY);
        let t = key
            .issue("county-renhe", 100_000, Duration::from_secs(60), 1_000)
            .unwrap();
        let c = key.verify(&t, 2_000).unwrap();
        assert_eq!(c.site, "county-renhe");
        assert_eq!(c.budget, 100_000);
        assert_eq!(c.exp, 61_000);
        assert_eq!(key.verify(&t, 61_000), Err(TokenError::Expired));
        let t2 = key.issue("", 1, Duration::from_secs(60), 1_000).unwrap();
        assert_ne!(t, t2);
        assert_eq!(key.verify(&t2, 0).unwrap().site, "");
        assert_ne!(
            key.verify(&t, 0).unwrap().nonce,
            key.verify(&t2, 0).unwrap().nonce
        );
    }

    #[test]
    fn tampered_and_foreign_tokens_are_invalid() {
        let key = TokenKey::new(KEY);
        let other = TokenKey::new(b"another key, another key, another");
        let t = key.issue("a", 10, Duration::from_secs(60), 0).unwrap();
        assert_eq!(other.verify(&t, 0), Err(TokenError::Invalid));
        let mut claims = key.verify(&t, 0).unwrap();
        claims.budget = 10_000_000_000;
        let forged = other.sign(&claims);
        let (_, tag) = t.rsplit_once('.').unwrap();
        let (signed, _) = forged.rsplit_once('.').unwrap();
        assert_eq!(
            key.verify(&format!("{signed}.{tag}"), 0),
            Err(TokenError::Invalid)
        );
        for bad in [
            "",
            "bp1",
            "bp1..",
            "x.y.z",
            &t[..t.len() - 2],
            &"a".repeat(5000),
        ] {
            assert_eq!(key.verify(bad, 0), Err(TokenError::Invalid), "{bad:?}");
        }
        assert!(matches!(
            key.issue(&"s".repeat(200), 1, Duration::from_secs(1), 0),
            Err(IssueError::SiteTooLong)
        ));
    }

    #[test]
    fn nonces_are_used_once_and_memory_is_bounded() {
        let mut cache = NonceCache::new(2);
        assert_eq!(cache.take([1; 16], 100, 0), Ok(()));
        assert_eq!(cache.take([1; 16], 100, 50), Err(NonceRefusal::Reused));
        assert_eq!(cache.take([2; 16], 100, 50), Ok(()));
        assert_eq!(cache.take([3; 16], 100, 50), Err(NonceRefusal::Full));
        // Once the first two expire there is room again.
        assert_eq!(cache.take([3; 16], 300, 100), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
