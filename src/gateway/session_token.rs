//! TODO(session_token): being written.
