//! TODO(revocation_store): being written.
