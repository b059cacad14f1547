//! TODO(credentials): being written.
