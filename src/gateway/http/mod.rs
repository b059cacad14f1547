//! HTTP composition: router, middleware order, handlers.
