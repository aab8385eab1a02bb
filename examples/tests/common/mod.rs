//! Shared by the tokio tests.

/// A multi-thread runtime with two workers, as the bench builds for its tokio peers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
