//! TODO(tls_config): being written.
