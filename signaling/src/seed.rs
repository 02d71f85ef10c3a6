//! Start-up: put the configured sites into the store, create configured users that do not exist yet
//! (changes made through the operator API are kept), and load the token key.

use crate::auth::{self, TokenKey};
use crate::config::Config;
use crate::domain::User;
use crate::store::{Store, StoreError};

/// Errors while seeding.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or randomness failed.
    #[error(transparent)]
    Hash(#[from] auth::HashError),
}

/// Seed sites and users from `config`; returns how many users were created.
pub async fn seed(config: &Config, store: &dyn Store) -> Result<usize, SeedError> {
    for site in &config.sites {
        store.put_site(site).await?;
    }
    let mut created = 0;
    for u in &config.users {
        if store.get_user(&u.username).await?.is_some() {
            continue;
        }
        let password_hash = match (&u.password_hash, &u.password) {
            (Some(h), _) => h.clone(),
            (None, Some(p)) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || auth::hash_password(&p))
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))??
            }
            // Refused by config validation.
            (None, None) => continue,
        };
        let user = User {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            site_id: u.site.clone(),
            specialties: u.specialties.clone(),
            password_hash,
            disabled: false,
            token_generation: 0,
        };
        match store.create_user(&user).await {
            Ok(()) => created += 1,
            // Another node seeded it at the same moment.
            Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// The token key: the configured secret, or the one kept in the store (generated on first start).
pub async fn token_key(config: &Config, store: &dyn Store) -> Result<TokenKey, SeedError> {
    if let Some(secret) = &config.auth.token_secret {
        return Ok(TokenKey::new(secret.as_bytes()));
    }
    let fresh = auth::random_key()?;
    Ok(TokenKey::new(
        &store.secret("token-hmac-key", &fresh).await?,
    ))
}
