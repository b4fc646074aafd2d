//! Clients for member clusters, built from kubeconfig Secrets and cached by Secret version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use govcloud_api::datacenter::DataCenterCluster;

/// Why a member cluster cannot be used. Messages say what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The referenced Secret does not exist.
    #[error(
        "kubeconfig Secret {namespace}/{name} not found; create it with `kubectl -n {namespace} create secret generic {name} --from-file=kubeconfig=PATH`"
    )]
    SecretMissing {
        /// Operator namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// The Secret has no such key.
    #[error(
        "kubeconfig Secret {namespace}/{name} has no key {key:?}; set spec.kubeconfigSecret.key to the key that holds the kubeconfig"
    )]
    SecretKeyMissing {
        /// Operator namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Missing key.
        key: String,
    },
    /// The kubeconfig could not be parsed or used.
    #[error("kubeconfig in Secret {namespace}/{name} is not usable: {reason}")]
    KubeconfigInvalid {
        /// Operator namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// What the kubeconfig loader said.
        reason: String,
    },
    /// The Secret could not be read from the hub.
    #[error("cannot read kubeconfig Secret: {0}")]
    SecretRead(#[source] kube::Error),
    /// The member API server did not answer properly.
    #[error("{}", describe(.0))]
    Unreachable(#[source] kube::Error),
    /// The member API server did not answer in time.
    #[error("the API server did not answer within {0:?}; check that it is running and the network path is open")]
    Timeout(Duration),
}

impl MemberError {
    /// CamelCase reason used in conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            MemberError::SecretMissing { .. } => "KubeconfigSecretNotFound",
            MemberError::SecretKeyMissing { .. } => "KubeconfigKeyNotFound",
            MemberError::KubeconfigInvalid { .. } => "KubeconfigInvalid",
            MemberError::SecretRead(_) => "KubeconfigSecretUnreadable",
            MemberError::Unreachable(e) => match classify(e) {
                Class::Auth if matches!(e, kube::Error::Api(s) if s.code == 403) => "Forbidden",
                Class::Auth => "Unauthorized",
                Class::Tls => "TLSError",
                Class::Refused => "ConnectionRefused",
                Class::Other => "APIServerError",
            },
            MemberError::Timeout(_) => "Timeout",
        }
    }

    /// Metric category.
    pub fn category(&self) -> &'static str {
        match self {
            MemberError::SecretMissing { .. }
            | MemberError::SecretKeyMissing { .. }
            | MemberError::KubeconfigInvalid { .. } => "member_config",
            _ => "member_unreachable",
        }
    }
}

enum Class {
    Auth,
    Tls,
    Refused,
    Other,
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn classify(e: &kube::Error) -> Class {
    if let kube::Error::Api(s) = e
        && (s.code == 401 || s.code == 403)
    {
        return Class::Auth;
    }
    let text = chain(e).to_lowercase();
    if text.contains("certificate")
        || text.contains("tls")
        || text.contains("handshake")
        || text.contains("unknownissuer")
    {
        Class::Tls
    } else if text.contains("connection refused") || text.contains("connect error") || text.contains("dns error") {
        Class::Refused
    } else {
        Class::Other
    }
}

/// A plain-language description of why a member API call failed.
pub fn describe(e: &kube::Error) -> String {
    let detail = chain(e);
    match classify(e) {
        Class::Auth if matches!(e, kube::Error::Api(s) if s.code == 403) => format!(
            "the identity lacks a permission ({detail}); grant it to the kubeconfig's user (for the hub itself: install the chart with rbac.hubIsMember=true)"
        ),
        Class::Auth => format!(
            "the API server rejected the credentials ({detail}); renew the token or client certificate in the kubeconfig Secret"
        ),
        Class::Tls => format!(
            "TLS failed ({detail}); check that the kubeconfig's certificate-authority-data matches the API server's certificate"
        ),
        Class::Refused => format!(
            "cannot connect to the API server ({detail}); check that it is running and that the server address in the kubeconfig is right"
        ),
        Class::Other => format!("the API server returned an error: {detail}"),
    }
}

/// Caches one client per member cluster, rebuilt when its Secret changes.
#[derive(Clone)]
pub struct MemberClients {
    hub: Client,
    namespace: String,
    /// Per cluster: the Secret reference it was built from, version, client, when the Secret
    /// was last read.
    cache: Arc<Mutex<HashMap<String, CachedClient>>>,
    timeout: Duration,
}

struct CachedClient {
    secret: String,
    version: String,
    client: Client,
    read: std::time::Instant,
}

/// How long a kubeconfig Secret read is trusted: reconciles of thousands of agencies and
/// systems on one cluster share one read instead of one each; a rotated kubeconfig is
/// picked up within this time.
/// The version string of the hub's own client (no kubeconfig Secret).
pub const HUB_VERSION: &str = "hub";

const SECRET_TTL: Duration = Duration::from_secs(10);

impl MemberClients {
    /// Clients for members whose kubeconfig Secrets live in `namespace` of the hub.
    pub fn new(hub: Client, namespace: impl Into<String>, timeout: Duration) -> Self {
        MemberClients {
            hub,
            namespace: namespace.into(),
            cache: Arc::default(),
            timeout,
        }
    }

    /// The hub client.
    pub fn hub(&self) -> &Client {
        &self.hub
    }

    /// Namespace holding kubeconfig Secrets.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Per-request timeout used for member probes.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client for a cluster: the hub itself when it has no kubeconfig Secret.
    pub async fn client_for(&self, dcc: &DataCenterCluster) -> Result<Client, MemberError> {
        self.versioned_client_for(dcc).await.map(|(c, _)| c)
    }

    /// The client for a cluster with a version string that changes when its Secret does
    /// (`hub` for the hub).
    pub async fn versioned_client_for(&self, dcc: &DataCenterCluster) -> Result<(Client, String), MemberError> {
        let Some(secret_ref) = &dcc.spec.kubeconfig_secret else {
            return Ok((self.hub.clone(), HUB_VERSION.to_string()));
        };
        let cluster = dcc.metadata.name.clone().unwrap_or_default();
        let secret_id = format!("{}/{}", secret_ref.name, secret_ref.key);
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(&cluster)
            && c.secret == secret_id
            && c.read.elapsed() < SECRET_TTL
        {
            return Ok((c.client.clone(), c.version.clone()));
        }
        let secrets: Api<Secret> = Api::namespaced(self.hub.clone(), &self.namespace);
        let secret = secrets
            .get_opt(&secret_ref.name)
            .await
            .map_err(MemberError::SecretRead)?
            .ok_or_else(|| MemberError::SecretMissing {
                namespace: self.namespace.clone(),
                name: secret_ref.name.clone(),
            })?;
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&secret_ref.key))
            .ok_or_else(|| MemberError::SecretKeyMissing {
                namespace: self.namespace.clone(),
                name: secret_ref.name.clone(),
                key: secret_ref.key.clone(),
            })?;
        // The version is the kubeconfig itself (hashed): it changes when the kubeconfig does,
        // and clusters registered twice (two DataCenterClusters, one kubeconfig) share one
        // member cache instead of watching the same objects twice.
        let version = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            data.0.hash(&mut h);
            format!("kubeconfig-{:016x}", h.finish())
        };
        if let Ok(mut cache) = self.cache.lock()
            && let Some(c) = cache.get_mut(&cluster)
            && c.version == version
            && c.secret == secret_id
        {
            c.read = std::time::Instant::now();
            return Ok((c.client.clone(), version));
        }
        let invalid = |reason: String| MemberError::KubeconfigInvalid {
            namespace: self.namespace.clone(),
            name: secret_ref.name.clone(),
            reason,
        };
        let text = std::str::from_utf8(&data.0).map_err(|_| invalid("not UTF-8 text".into()))?;
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| invalid(e.to_string()))?;
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| invalid(e.to_string()))?;
        config.connect_timeout = Some(self.timeout);
        config.read_timeout = Some(Duration::from_secs(290));
        let client = Client::try_from(config).map_err(|e| invalid(e.to_string()))?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                cluster,
                CachedClient {
                    secret: secret_id,
                    version: version.clone(),
                    client: client.clone(),
                    read: std::time::Instant::now(),
                },
            );
        }
        Ok((client, version))
    }

    /// Forgets a cluster's client (on deletion).
    pub fn forget(&self, cluster: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(cluster);
        }
    }
}
