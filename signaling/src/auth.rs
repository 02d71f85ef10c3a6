//! Passwords (Argon2id) and login tokens (HMAC-SHA256 over a small JSON payload, with expiry).
//!
//! A token is `v1.<payload>.<mac>`, both parts base64url: the payload names the user, the account's
//! token generation (bumped on password change or disable, which revokes older tokens), and the
//! issue and expiry times. Nothing clinical is in it.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use bandwidth_probe::token::{open, seal};
use serde::{Deserialize, Serialize};

use crate::domain::Millis;

/// Errors from token checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, or the signature does not match.
    #[error("the token is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("the token has expired; log in again")]
    Expired,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User name.
    pub sub: String,
    /// Account token generation.
    pub generation: u32,
    /// Issued (Unix ms).
    pub iat: Millis,
    /// Expires (Unix ms).
    pub exp: Millis,
}

/// Signs and checks tokens with one key.
#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Longest token accepted (a real one is about 150 bytes).
const MAX_TOKEN_LEN: usize = 1024;
/// Prefix (format version) of every login token.
const PREFIX: &str = "v1.";

impl TokenKey {
    /// A key from secret bytes.
    pub fn new(key: &[u8]) -> TokenKey {
        TokenKey { key: key.to_vec() }
    }

    /// A signed token for `claims` (the format of `bandwidth_probe::token::seal`, prefix `v1.`).
    pub fn sign(&self, claims: &Claims) -> String {
        seal(&self.key, PREFIX, claims)
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: Millis) -> Result<Claims, TokenError> {
        let claims: Claims =
            open(&self.key, PREFIX, token, MAX_TOKEN_LEN).ok_or(TokenError::Invalid)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Errors hashing a password.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id hash (PHC string) of `password` with a fresh random salt. CPU-heavy: call from a
/// blocking thread.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| HashError(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash). CPU-heavy.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so a wrong user name costs as much time
/// as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// 32 random bytes for a token key.
pub fn random_key() -> Result<Vec<u8>, HashError> {
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).map_err(|e| HashError(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims(exp: Millis) -> Claims {
        Claims {
            sub: "doctor".into(),
            generation: 3,
            iat: 0,
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef");
        let t = key.sign(&claims(1_000));
        assert_eq!(key.verify(&t, 999), Ok(claims(1_000)));
        assert_eq!(key.verify(&t, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_and_foreign_tokens_are_invalid() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef");
        let other = TokenKey::new(b"another key, another key, another");
        let t = key.sign(&claims(1_000));
        assert_eq!(other.verify(&t, 0), Err(TokenError::Invalid));
        // Change the payload (claim another user) and keep the tag.
        let (_, rest) = t.split_once('.').unwrap();
        let (_, tag) = rest.split_once('.').unwrap();
        let mut forged = claims(1_000);
        forged.sub = "specialist".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            key.verify(&format!("v1.{payload}.{tag}"), 0),
            Err(TokenError::Invalid)
        );
        for bad in [
            "",
            "v1",
            "v1..",
            "x.y.z",
            &t[..t.len() - 2],
            &"a".repeat(5000),
        ] {
            assert_eq!(key.verify(bad, 0), Err(TokenError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("demo-doctor").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("demo-doctor", &h));
        assert!(!verify_password("demo-doctoR", &h));
        assert!(!verify_password("demo-doctor", "not a hash"));
        assert_ne!(h, hash_password("demo-doctor").unwrap(), "salted");
    }
}
