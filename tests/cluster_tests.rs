//! Cluster mode (`[cluster] mode = "redis"`) against a real `redis-server`
//! started by each test on a free loopback port (see
//! `tests/common/redis_server.rs`). Without the binary these tests fail
//! with the fix; they never pass by skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod cluster;
mod common;
