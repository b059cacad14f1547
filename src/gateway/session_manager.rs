//! TODO(session_manager): being written.
