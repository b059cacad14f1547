//! HTTP composition: router, middleware order, handlers.

pub mod proxy;
