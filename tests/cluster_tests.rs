//! Cluster mode (`[cluster] mode = "redis"`) against a real `redis-server`
//! started by each test on a free loopback port (see
//! `tests/common/redis_server.rs`). Without the binary these tests fail
//! with the fix; they never pass by skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// tests: a panic is a failure
// The fleet's helpers are shared by the topic modules (`pub` for them) and
// some fields only keep their resource alive (the upstream, the keys dir).
#![allow(unreachable_pub, dead_code)]

mod cluster;
mod common;
