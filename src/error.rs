//! The crate-level error: one variant per module error, for the composition
//! root and the CLI. Modules return their own error types.

use crate::config::ConfigError;
use crate::gateway::certificate_manager::CertError;
use crate::gateway::session_manager::OpenError;
use crate::gateway::session_token::keyring::KeyError;
use crate::gateway::tls_config::TlsConfigError;
use crate::gateway::tls_config::client_auth::ClientAuthError;

/// Anything that stops the gateway from being built or a CLI command from
/// completing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates could not be loaded or generated.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The mutual-TLS settings are unusable.
    #[error(transparent)]
    ClientAuth(#[from] ClientAuthError),
    /// The TLS policy could not be built.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The keys directory could not be opened or initialised.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The session manager could not be opened (keys directory, random
    /// generator).
    #[error(transparent)]
    Sessions(#[from] OpenError),
    /// `[cluster]` could not be set up (password file, URL).
    #[error(transparent)]
    Cluster(#[from] crate::gateway::cluster::ClusterSetupError),
    /// A socket could not be bound or another I/O step failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
