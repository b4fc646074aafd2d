//! govcloud-s3-gateway: an S3 gateway between Velero (and its kopia data mover) and the
//! object store that encrypts every object with SM4-GCM under a per-agency data key and
//! keeps every agency inside its own bucket prefix with its own credentials.

pub mod config;
pub mod crypto;
pub mod gateway;
pub mod keys;
pub mod sm4_fast;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Builds the store client, key ring and service from a configuration.
pub fn build(cfg: &config::Config) -> Result<(upstream::S3Client, Arc<keys::Keyring>, gateway::Gateway)> {
    let store = store_client(cfg)?;
    let keyring = Arc::new(keys::Keyring::new(
        store.clone(),
        Box::new(keys::FileKeyProvider::new(&cfg.key_dir)),
        Duration::from_secs(cfg.key_cache_seconds),
    ));
    let mut agencies = cfg.agencies.clone();
    for (i, a) in agencies.iter_mut().enumerate() {
        let s = config::secret(&format!("agencies[{i}].secretKey"), &a.secret_key, &a.secret_key_file)?;
        a.secret_key = Some(s);
    }
    let gw = gateway::Gateway::new(store.clone(), keyring.clone(), &agencies);
    Ok((store, keyring, gw))
}

/// The client for the store behind the gateway.
pub fn store_client(cfg: &config::Config) -> Result<upstream::S3Client> {
    let u = &cfg.upstream;
    let secret = config::secret("upstream.secretKey", &u.secret_key, &u.secret_key_file)?;
    upstream::S3Client::new(upstream::Endpoint {
        url: u.endpoint.clone(),
        region: u.region.clone(),
        access_key: u.access_key.clone(),
        secret_key: secret,
    })
    .context("upstream.endpoint")
}
