//! Certificates: being written.

/// Certificate errors.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Placeholder.
    #[error("placeholder")]
    Placeholder,
}
