//! The `const` clamps the configurations' setters share (`Ord::max` and `Option::filter`
//! are not `const`).

use std::time::Duration;

/// `None` for a zero timeout ("never"), as the setters document.
pub(crate) const fn nonzero(timeout: Option<Duration>) -> Option<Duration> {
    match timeout {
        Some(d) if d.is_zero() => None,
        other => other,
    }
}

/// `n`, raised to `min` (`Ord::max` is not `const`).
pub(crate) const fn at_least(n: usize, min: usize) -> usize {
    if n < min { min } else { n }
}
