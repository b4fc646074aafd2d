//! The reconcile-boundary error type and its low-cardinality categories.

use crate::member::MemberError;

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the hub API server failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),

    /// A member cluster could not be reached or its credentials are unusable.
    #[error("member cluster {cluster}: {source}")]
    Member {
        /// The DataCenterCluster name.
        cluster: String,
        /// What went wrong.
        #[source]
        source: MemberError,
    },

    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// Building a request body failed (a bug; reported, never panics).
    #[error("serializing {what}: {source}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// The object is missing a field the API server always sets (name, uid).
    #[error("object is missing {0}")]
    MissingField(&'static str),

    /// Deletion waits (workloads present, or the cluster unreachable); the message says why.
    #[error("deletion blocked: {0}")]
    DeletionBlocked(String),
}

impl Error {
    /// A stable, low-cardinality label used for the errors metric and Event reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 || s.code == 401 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => "invalid",
            Error::Kube(_) => "api",
            Error::Member { source, .. } => source.category(),
            Error::Finalizer(e) => match &**e {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::Serialize { .. } => "internal",
            Error::MissingField(_) => "internal",
            Error::DeletionBlocked(_) => "deletion_blocked",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// Result alias for reconcilers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
