//! Cluster mode (`[cluster] mode = "redis"`) against a real `redis-server`
//! started by each test on a free loopback port (see
//! `tests/common/redis_server.rs`). Without the binary these tests fail
//! with the fix; they never pass by skipping.

mod cluster;
mod common;
