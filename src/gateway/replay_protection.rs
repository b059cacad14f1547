//! TODO(replay_protection): being written.
