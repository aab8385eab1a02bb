//! A lane's bytes, and the only code that touches them. Outside `cfg(loom)` these are raw
//! copies into an `UnsafeCell` slice; under `cfg(loom)` every byte is a `loom` cell, so the
//! model checker sees each access and reports any two that race (see `loom.rs`).
//!
//! Every method is `unsafe` with one contract: the bytes named are in bounds and, by the
//! protocol on [`Lane`](super::Lane), no other thread writes them during the call (and, for a
//! write or a move, none reads them either).
#![allow(unsafe_code)]

#[cfg(not(loom))]
mod imp {
    use std::cell::UnsafeCell;
    use std::{ptr, slice};

    /// The bytes of one lane.
    pub(crate) struct Buf(Box<[UnsafeCell<u8>]>);

    impl Buf {
        pub(crate) fn new(len: usize) -> Self {
            Self((0..len).map(|_| UnsafeCell::new(0)).collect())
        }

        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }

        #[inline(always)]
        fn base(&self) -> *mut u8 {
            UnsafeCell::raw_get(self.0.as_ptr())
        }

        /// Copies `bytes` to `at..`.
        ///
        /// # Safety
        /// See the module: `at + bytes.len() <= len()`, nobody else reads or writes them.
        #[inline(always)]
        pub(crate) unsafe fn write(&self, at: usize, bytes: &[u8]) {
            // SAFETY: in bounds and unshared by the caller's contract; `bytes` is the
            // caller's own slice, disjoint from the cells.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.base().add(at), bytes.len()) }
        }

        /// Lends `at..at + len` to `f`.
        ///
        /// # Safety
        /// See the module: in bounds, and nobody writes them until `f` returns.
        #[inline(always)]
        pub(crate) unsafe fn read<R>(
            &self,
            at: usize,
            len: usize,
            f: impl FnOnce(&[u8]) -> R,
        ) -> R {
            // SAFETY: in bounds, and not written while the slice lives (caller's contract).
            f(unsafe { slice::from_raw_parts(self.base().add(at), len) })
        }

        /// Moves `from..from + len` to the front (the ranges may overlap).
        ///
        /// # Safety
        /// See the module: in bounds, nobody else reads or writes either range.
        #[inline(always)]
        pub(crate) unsafe fn move_to_front(&self, from: usize, len: usize) {
            // SAFETY: both ranges in bounds and unshared by the caller's contract; `copy`
            // allows the overlap.
            unsafe { ptr::copy(self.base().add(from), self.base(), len) }
        }
    }
}

#[cfg(loom)]
mod imp {
    use loom::cell::UnsafeCell;

    /// The bytes of one lane, one tracked cell each.
    pub(crate) struct Buf(Box<[UnsafeCell<u8>]>);

    impl Buf {
        pub(crate) fn new(len: usize) -> Self {
            Self((0..len).map(|_| UnsafeCell::new(0)).collect())
        }

        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }

        pub(crate) unsafe fn write(&self, at: usize, bytes: &[u8]) {
            for (cell, &b) in self.0[at..at + bytes.len()].iter().zip(bytes) {
                // SAFETY: the model checks the caller's contract.
                cell.with_mut(|p| unsafe { *p = b });
            }
        }

        pub(crate) unsafe fn read<R>(
            &self,
            at: usize,
            len: usize,
            f: impl FnOnce(&[u8]) -> R,
        ) -> R {
            let copy: Vec<u8> = self.0[at..at + len]
                .iter()
                // SAFETY: the model checks the caller's contract.
                .map(|cell| cell.with(|p| unsafe { *p }))
                .collect();
            f(&copy)
        }

        pub(crate) unsafe fn move_to_front(&self, from: usize, len: usize) {
            for i in 0..len {
                // SAFETY: the model checks the caller's contract.
                let b = self.0[from + i].with(|p| unsafe { *p });
                self.0[i].with_mut(|p| unsafe { *p = b });
            }
        }
    }
}

pub(crate) use imp::Buf;

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buf").field("len", &self.len()).finish()
    }
}
