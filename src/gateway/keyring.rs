//! TODO(keyring): being written.
