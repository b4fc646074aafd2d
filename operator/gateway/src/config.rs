//! The gateway's configuration file (YAML).
//!
//! ```yaml
//! listen: 0.0.0.0:9000
//! upstream:
//!   endpoint: http://object-store:9000
//!   region: us-east-1
//!   accessKey: gateway
//!   secretKeyFile: /etc/govcloud-gateway/upstream/secret-key
//! keyDir: /etc/govcloud-gateway/kek          # the mounted KEK Secret
//! keyCacheSeconds: 60
//! agencies:
//!   - name: agency-a
//!     accessKey: AGENCYA
//!     secretKeyFile: /etc/govcloud-gateway/agencies/agency-a
//!     bucket: backups
//!     prefix: agency-a/
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::RESERVED_PREFIX;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Address to serve S3 on.
    #[serde(default = "default_listen")]
    pub listen: String,
    pub upstream: Upstream,
    /// Directory of the mounted key-encryption-key Secret (files `current`, `kek.<id>`).
    pub key_dir: PathBuf,
    /// How long an unwrapped data key is used before its KEK is asked for again.
    #[serde(default = "default_cache")]
    pub key_cache_seconds: u64,
    pub agencies: Vec<Agency>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key: String,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agency {
    pub name: String,
    pub access_key: String,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// The bucket its backups go to.
    pub bucket: String,
    /// Its key prefix in that bucket (ends with `/`); it can reach nothing outside it.
    pub prefix: String,
}

fn default_listen() -> String {
    "127.0.0.1:9000".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_cache() -> u64 {
    60
}

/// A configuration problem, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads a secret given inline or as a file (the file wins; trailing newline dropped).
pub fn secret(field: &str, inline: &Option<String>, file: &Option<PathBuf>) -> Result<String, ConfigError> {
    if let Some(f) = file {
        return std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| err(format!("{field}File"), format!("cannot read {}: {e}", f.display())));
    }
    inline
        .clone()
        .ok_or_else(|| err(field, format!("set {field}File (a mounted Secret) or {field}")))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err("config", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c: Config = serde_yaml::from_str(text).map_err(|e| err("config", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the agencies are told apart: distinct names and access keys, prefixes that
    /// neither overlap nor reach the gateway's own records.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.agencies.is_empty() {
            return Err(err("agencies", "list at least one agency"));
        }
        for (i, a) in self.agencies.iter_mut().enumerate() {
            let f = |n: &str| format!("agencies[{i}].{n}");
            if a.name.is_empty() || !a.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(err(f("name"), "use letters, digits and '-'"));
            }
            if a.access_key.is_empty() {
                return Err(err(f("accessKey"), "must not be empty"));
            }
            if a.bucket.is_empty() {
                return Err(err(f("bucket"), "must not be empty"));
            }
            if a.prefix.is_empty() || a.prefix.starts_with('/') {
                return Err(err(
                    f("prefix"),
                    "give the agency's own key prefix, e.g. \"agency-a/\" (an empty prefix would hand it the whole bucket)",
                ));
            }
            if !a.prefix.ends_with('/') {
                a.prefix.push('/');
            }
            if a.prefix.starts_with(RESERVED_PREFIX) || RESERVED_PREFIX.starts_with(a.prefix.as_str()) {
                return Err(err(
                    f("prefix"),
                    format!("must not overlap the gateway's {RESERVED_PREFIX}"),
                ));
            }
        }
        for (i, a) in self.agencies.iter().enumerate() {
            for (j, b) in self.agencies.iter().enumerate().skip(i + 1) {
                if a.name == b.name {
                    return Err(err(
                        format!("agencies[{j}].name"),
                        format!("{:?} is listed twice", b.name),
                    ));
                }
                if a.access_key == b.access_key {
                    return Err(err(
                        format!("agencies[{j}].accessKey"),
                        format!("shared with agency {:?}: every agency needs its own", a.name),
                    ));
                }
                if a.bucket == b.bucket && (a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix)) {
                    return Err(err(
                        format!("agencies[{j}].prefix"),
                        format!(
                            "{:?} overlaps agency {:?}'s {:?} in bucket {:?}",
                            b.prefix, a.name, a.prefix, a.bucket
                        ),
                    ));
                }
            }
        }
        if !(self.upstream.endpoint.starts_with("http://") || self.upstream.endpoint.starts_with("https://")) {
            return Err(err("upstream.endpoint", "give a URL starting with http:// or https://"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "upstream: {endpoint: 'http://127.0.0.1:1', accessKey: a, secretKey: s}\nkeyDir: /k\n";

    fn agencies(list: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}agencies:\n{list}"))
    }

    #[test]
    fn the_example_configuration_parses() {
        let c = Config::parse(include_str!("../../../examples/backup/gateway.yaml")).unwrap();
        // The internal-network store's gateway: mof only (zj-bigdata is on the external zone).
        assert_eq!(c.agencies.len(), 1);
        assert_eq!(
            (
                c.agencies[0].name.as_str(),
                c.agencies[0].prefix.as_str(),
                c.agencies[0].bucket.as_str()
            ),
            ("mof", "mof/", "govcloud-backups")
        );
        assert!(
            c.agencies
                .iter()
                .all(|a| a.secret_key_file.is_some() && a.prefix.ends_with('/'))
        );
    }

    #[test]
    fn prefixes_are_normalised_and_must_not_overlap() {
        let c = agencies("- {name: a, accessKey: A, secretKey: x, bucket: b, prefix: a}\n").unwrap();
        assert_eq!(c.agencies[0].prefix, "a/");
        let e = agencies(
            "- {name: a, accessKey: A, secretKey: x, bucket: b, prefix: a/}\n\
             - {name: b, accessKey: B, secretKey: x, bucket: b, prefix: a/b/}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("agencies[1].prefix") && e.to_string().contains("overlaps"),
            "{e}"
        );
        // The same prefix in another bucket is fine; a shared access key is not.
        agencies(
            "- {name: a, accessKey: A, secretKey: x, bucket: b, prefix: a/}\n\
             - {name: b, accessKey: B, secretKey: x, bucket: c, prefix: a/}\n",
        )
        .unwrap();
        let e = agencies(
            "- {name: a, accessKey: A, secretKey: x, bucket: b, prefix: a/}\n\
             - {name: b, accessKey: A, secretKey: x, bucket: b, prefix: b/}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("agencies[1].accessKey"), "{e}");
        for p in ["''", ".govcloud-gateway/x/", "/abs/", ".govcloud-gateway"] {
            let e = agencies(&format!(
                "- {{name: a, accessKey: A, secretKey: x, bucket: b, prefix: {p}}}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains("agencies[0].prefix"), "{p}: {e}");
        }
    }
}
