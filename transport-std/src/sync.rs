//! The lock helper shared by the listener, the writer and the manager.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`. A poisoned lock only means a thread panicked while holding it (user code, such
/// as a callback; the library's own critical sections do not panic), and every value kept
/// under these locks is valid between any two statements, so the data is used as it is.
pub(crate) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
