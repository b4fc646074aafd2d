//! Data keys and the key-encryption keys that wrap them.
//!
//! Every agency has one or more 128-bit SM4 data keys. A data key is never stored in clear:
//! the store holds it wrapped (SM4-GCM) by a key-encryption key (KEK), which the gateway
//! reaches only through a [`KeyProvider`]. The built-in provider reads KEKs from a mounted
//! Kubernetes Secret; a hardware KMS or cipher machine (密码机) implements the same three
//! calls and never hands the KEK out.
//!
//! Rotation puts a new KEK into the provider, makes it current, and rewraps each agency's
//! data keys under it ([`Keyring::rotate`]): the wrapped records change, the objects do not.
//! After that the old KEK can be removed (revoked).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, KEY_LEN};
use crate::upstream::{S3Client, UpstreamError};

/// Prefix of the gateway's own records in each bucket; no agency prefix may overlap it.
pub const RESERVED_PREFIX: &str = ".govcloud-gateway/";

/// Why a data key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key-encryption key {kek:?} is not held by the key provider ({provider}): it was revoked or \
         its Secret is not mounted; restore it to the Secret (or run `govcloud-s3-gateway rotate` \
         while it is still there) to read data keys wrapped by it"
    )]
    NotHeld { kek: String, provider: String },
    #[error(
        "data key {dek:?} of agency {agency:?} does not unwrap with key-encryption key {kek:?} \
         ({provider}): the provider holds a different key under that id (wrong Secret mounted?)"
    )]
    WrongKey {
        agency: String,
        dek: String,
        kek: String,
        provider: String,
    },
    #[error("data key {dek:?} of agency {agency:?} is not in the store (its record {record} is missing)")]
    MissingDataKey {
        agency: String,
        dek: String,
        record: String,
    },
    #[error("key provider ({provider}): {message}")]
    Provider { provider: String, message: String },
    #[error("key record {record}: {message}")]
    Record { record: String, message: String },
    #[error(transparent)]
    Store(#[from] UpstreamError),
}

/// Wraps and unwraps data keys under key-encryption keys it holds. A hardware security
/// module implements this without ever returning a KEK.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// Id of the KEK that new wraps (and rotation) use.
    async fn current(&self) -> Result<String, KeyError>;
    /// Seals `key` under KEK `kek`, binding `aad`.
    async fn wrap(&self, kek: &str, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Opens what [`KeyProvider::wrap`] sealed. `Ok(None)` when the tag does not verify
    /// (a different key under that id, or a tampered record).
    async fn unwrap(&self, kek: &str, wrapped: &[u8], aad: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError>;
    /// Whether KEK `kek` is (still) held.
    async fn holds(&self, kek: &str) -> Result<bool, KeyError>;
    /// Where the keys come from, for messages.
    fn describe(&self) -> String;
}

/// KEKs from a directory: the mounted Kubernetes Secret. Each KEK is a file `kek.<id>`
/// holding 32 hex digits (128 bits); the file `current` names the id new wraps use. Files
/// are read on every call, so a Secret update (a new KEK, a revoked one) takes effect
/// without a restart.
pub struct FileKeyProvider {
    dir: PathBuf,
}

impl FileKeyProvider {
    pub fn new(dir: impl Into<PathBuf>) -> FileKeyProvider {
        FileKeyProvider { dir: dir.into() }
    }

    fn valid_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    fn read_kek(&self, kek: &str) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, KeyError> {
        if !Self::valid_id(kek) {
            return Ok(None);
        }
        let path = self.dir.join(format!("kek.{kek}"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(KeyError::Provider {
                    provider: self.describe(),
                    message: format!("cannot read {}: {e}", path.display()),
                });
            }
        };
        let bytes = Zeroizing::new(crypto::unhex(&text).unwrap_or_default());
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| KeyError::Provider {
            provider: self.describe(),
            message: format!(
                "{} must hold 32 hex digits (a 128-bit SM4 key), e.g. from `openssl rand -hex 16`",
                path.display()
            ),
        })?;
        Ok(Some(Zeroizing::new(key)))
    }

    /// Writes a new random KEK `id` into `dir` (for tests and first setup).
    pub fn generate(dir: &Path, id: &str, make_current: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let key: [u8; KEY_LEN] = crypto::random();
        std::fs::write(dir.join(format!("kek.{id}")), crypto::hex(&key))?;
        if make_current {
            std::fs::write(dir.join("current"), id)?;
        }
        Ok(())
    }
}

#[async_trait]
impl KeyProvider for FileKeyProvider {
    async fn current(&self) -> Result<String, KeyError> {
        let path = self.dir.join("current");
        let id = std::fs::read_to_string(&path)
            .map_err(|e| KeyError::Provider {
                provider: self.describe(),
                message: format!(
                    "cannot read {} (the id of the key-encryption key to wrap with): {e}",
                    path.display()
                ),
            })?
            .trim()
            .to_string();
        if !Self::valid_id(&id) {
            return Err(KeyError::Provider {
                provider: self.describe(),
                message: format!("{} names {id:?}, not a key id (letters, digits, - _ .)", path.display()),
            });
        }
        Ok(id)
    }

    async fn wrap(&self, kek: &str, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let k = self.read_kek(kek)?.ok_or_else(|| KeyError::NotHeld {
            kek: kek.to_string(),
            provider: self.describe(),
        })?;
        Ok(crypto::wrap_key(&k, key, aad))
    }

    async fn unwrap(&self, kek: &str, wrapped: &[u8], aad: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
        let k = self.read_kek(kek)?.ok_or_else(|| KeyError::NotHeld {
            kek: kek.to_string(),
            provider: self.describe(),
        })?;
        Ok(crypto::unwrap_key(&k, wrapped, aad).ok())
    }

    async fn holds(&self, kek: &str) -> Result<bool, KeyError> {
        Ok(self.read_kek(kek)?.is_some())
    }

    fn describe(&self) -> String {
        format!("Secret files in {}", self.dir.display())
    }
}

/// A wrapped data key as stored: `<bucket>/.govcloud-gateway/keys/<agency>/<id>.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DataKeyRecord {
    pub version: u32,
    pub agency: String,
    pub id: String,
    /// RFC 3339; the newest data key seals new objects.
    pub created: String,
    /// Id of the KEK that wraps it.
    pub kek: String,
    /// `nonce || ciphertext || tag`, hex.
    pub wrapped: String,
}

impl DataKeyRecord {
    fn aad(agency: &str, id: &str, kek: &str) -> Vec<u8> {
        format!("govcloud-gw1 data key\0{agency}\0{id}\0{kek}").into_bytes()
    }
}

/// What [`Keyring::rotate`] did for one agency.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub rewrapped: usize,
    pub already_current: usize,
    pub created: Option<String>,
}

struct Cached {
    key: Zeroizing<[u8; KEY_LEN]>,
    kek: String,
    at: Instant,
}

/// The data keys of all agencies: read from the store, unwrapped through the provider,
/// cached for `ttl` (after which the KEK is asked for again, so a revocation takes effect).
pub struct Keyring {
    store: S3Client,
    provider: Box<dyn KeyProvider>,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), Cached>>,
    current: Mutex<HashMap<String, (String, Instant)>>,
}

/// The store key of an agency's data key record.
pub fn record_key(agency: &str, id: &str) -> String {
    format!("{RESERVED_PREFIX}keys/{agency}/{id}.json")
}

impl Keyring {
    pub fn new(store: S3Client, provider: Box<dyn KeyProvider>, ttl: Duration) -> Keyring {
        Keyring {
            store,
            provider,
            ttl,
            cache: Mutex::new(HashMap::new()),
            current: Mutex::new(HashMap::new()),
        }
    }

    pub fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }

    async fn records(&self, bucket: &str, agency: &str) -> Result<Vec<DataKeyRecord>, KeyError> {
        let prefix = format!("{RESERVED_PREFIX}keys/{agency}/");
        let mut out = Vec::new();
        for o in self.store.list_all(bucket, &prefix).await? {
            out.push(self.read_record(bucket, &o.key).await?);
        }
        Ok(out)
    }

    async fn read_record(&self, bucket: &str, key: &str) -> Result<DataKeyRecord, KeyError> {
        let bytes = self.store.get_bytes(bucket, key).await?;
        serde_json::from_slice(&bytes).map_err(|e| KeyError::Record {
            record: format!("{bucket}/{key}"),
            message: e.to_string(),
        })
    }

    async fn unwrap_record(&self, r: &DataKeyRecord) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
        let wrong = || KeyError::WrongKey {
            agency: r.agency.clone(),
            dek: r.id.clone(),
            kek: r.kek.clone(),
            provider: self.provider.describe(),
        };
        let wrapped = crypto::unhex(&r.wrapped).ok_or_else(wrong)?;
        let key = self
            .provider
            .unwrap(&r.kek, &wrapped, &DataKeyRecord::aad(&r.agency, &r.id, &r.kek))
            .await?
            .ok_or_else(wrong)?;
        let key: [u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| wrong())?;
        Ok(Zeroizing::new(key))
    }

    fn cached(&self, agency: &str, id: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let cache = self.cache.lock().ok()?;
        let c = cache.get(&(agency.to_string(), id.to_string()))?;
        (c.at.elapsed() < self.ttl).then(|| c.key.clone())
    }

    fn remember(&self, agency: &str, id: &str, key: &Zeroizing<[u8; KEY_LEN]>, kek: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                (agency.to_string(), id.to_string()),
                Cached {
                    key: key.clone(),
                    kek: kek.to_string(),
                    at: Instant::now(),
                },
            );
        }
    }

    /// Data key `id` of `agency` (to read an object it sealed).
    pub async fn data_key(&self, bucket: &str, agency: &str, id: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
        if let Some(k) = self.cached(agency, id) {
            return Ok(k);
        }
        let record = record_key(agency, id);
        let r = match self.read_record(bucket, &record).await {
            Ok(r) => r,
            Err(KeyError::Store(e)) if e.is_not_found() => {
                return Err(KeyError::MissingDataKey {
                    agency: agency.to_string(),
                    dek: id.to_string(),
                    record: format!("{bucket}/{record}"),
                });
            }
            Err(e) => return Err(e),
        };
        if r.agency != agency || r.id != id {
            return Err(KeyError::Record {
                record: format!("{bucket}/{record}"),
                message: format!("names agency {:?} key {:?}, not {agency:?} {id:?}", r.agency, r.id),
            });
        }
        let key = self.unwrap_record(&r).await?;
        self.remember(agency, id, &key, &r.kek);
        Ok(key)
    }

    /// The data key new objects of `agency` are sealed with (created on first use).
    pub async fn current_data_key(
        &self,
        bucket: &str,
        agency: &str,
    ) -> Result<(String, Zeroizing<[u8; KEY_LEN]>), KeyError> {
        let known = self.current.lock().ok().and_then(|c| {
            c.get(agency)
                .filter(|(_, at)| at.elapsed() < self.ttl)
                .map(|(id, _)| id.clone())
        });
        if let Some(id) = known
            && let Some(k) = self.cached(agency, &id)
        {
            return Ok((id, k));
        }
        let mut records = self.records(bucket, agency).await?;
        records.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        let (id, key) = match records.pop() {
            Some(r) => {
                let key = self.unwrap_record(&r).await?;
                self.remember(agency, &r.id, &key, &r.kek);
                (r.id, key)
            }
            None => self.create(bucket, agency).await?,
        };
        if let Ok(mut c) = self.current.lock() {
            c.insert(agency.to_string(), (id.clone(), Instant::now()));
        }
        Ok((id, key))
    }

    /// Makes, wraps and stores a new data key for `agency`; it seals new objects from now on.
    pub async fn create(&self, bucket: &str, agency: &str) -> Result<(String, Zeroizing<[u8; KEY_LEN]>), KeyError> {
        let key: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(crypto::random());
        let now = jiff::Timestamp::now();
        let id = format!(
            "{}-{}",
            now.strftime("%Y%m%dT%H%M%S%.fZ"),
            crypto::hex(&crypto::random::<4>())
        )
        .replace('.', "");
        let kek = self.provider.current().await?;
        let wrapped = self
            .provider
            .wrap(&kek, &key[..], &DataKeyRecord::aad(agency, &id, &kek))
            .await?;
        let r = DataKeyRecord {
            version: 1,
            agency: agency.to_string(),
            id: id.clone(),
            created: now.to_string(),
            kek: kek.clone(),
            wrapped: crypto::hex(&wrapped),
        };
        self.write_record(bucket, &r).await?;
        self.remember(agency, &id, &key, &kek);
        if let Ok(mut c) = self.current.lock() {
            c.insert(agency.to_string(), (id.clone(), Instant::now()));
        }
        Ok((id, key))
    }

    async fn write_record(&self, bucket: &str, r: &DataKeyRecord) -> Result<(), KeyError> {
        let body = serde_json::to_vec_pretty(r).map_err(|e| KeyError::Record {
            record: record_key(&r.agency, &r.id),
            message: e.to_string(),
        })?;
        self.store
            .put_bytes(bucket, &record_key(&r.agency, &r.id), Bytes::from(body))
            .await?;
        Ok(())
    }

    /// Rewraps every data key of `agency` under the provider's current KEK (the objects are
    /// not touched); with `new_data_key`, also starts a new data key for new objects.
    pub async fn rotate(&self, bucket: &str, agency: &str, new_data_key: bool) -> Result<RotationReport, KeyError> {
        let current = self.provider.current().await?;
        if !self.provider.holds(&current).await? {
            return Err(KeyError::NotHeld {
                kek: current,
                provider: self.provider.describe(),
            });
        }
        let mut report = RotationReport::default();
        for mut r in self.records(bucket, agency).await? {
            if r.kek == current {
                report.already_current += 1;
                continue;
            }
            let key = self.unwrap_record(&r).await?;
            let wrapped = self
                .provider
                .wrap(&current, &key[..], &DataKeyRecord::aad(&r.agency, &r.id, &current))
                .await?;
            r.kek = current.clone();
            r.wrapped = crypto::hex(&wrapped);
            self.write_record(bucket, &r).await?;
            report.rewrapped += 1;
        }
        if new_data_key {
            let (id, _) = self.create(bucket, agency).await?;
            report.created = Some(id);
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(a, _), c| a != agency || c.kek == current);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gw-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn file_provider_wraps_and_refuses_what_it_lacks() {
        let d = tmp("fp");
        FileKeyProvider::generate(&d, "k1", true).unwrap();
        let p = FileKeyProvider::new(&d);
        assert_eq!(p.current().await.unwrap(), "k1");
        let w = p.wrap("k1", &[1u8; 16], b"ctx").await.unwrap();
        assert_eq!(
            p.unwrap("k1", &w, b"ctx").await.unwrap().unwrap().as_slice(),
            &[1u8; 16]
        );
        assert!(p.unwrap("k1", &w, b"other").await.unwrap().is_none());
        // Revoked: the file is gone.
        std::fs::remove_file(d.join("kek.k1")).unwrap();
        let e = p.unwrap("k1", &w, b"ctx").await.unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
        // Ids cannot climb out of the directory.
        assert!(!p.holds("../current").await.unwrap());
        // A malformed key names its file and what it must hold.
        std::fs::write(d.join("kek.bad"), "xyz").unwrap();
        let e = p.wrap("bad", &[1u8; 16], b"").await.unwrap_err().to_string();
        assert!(e.contains("kek.bad") && e.contains("32 hex digits"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
