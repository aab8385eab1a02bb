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

        /// The bytes of `bytes` as a lane's (no copy).
        pub(crate) fn from_bytes(bytes: Box<[u8]>) -> Self {
            // SAFETY: `UnsafeCell<u8>` has the layout of `u8` (it is `repr(transparent)`), so
            // the allocation is the same slice; the box is ours alone.
            Self(unsafe { Box::from_raw(Box::into_raw(bytes) as *mut [UnsafeCell<u8>]) })
        }

        /// The bytes as plain ones (no copy): owned, so nobody else can reach them.
        pub(crate) fn into_bytes(self) -> Box<[u8]> {
            // SAFETY: as in `from_bytes`; taking `self` by value, no reference to a cell is
            // left, so nobody can write them behind the plain bytes' back.
            unsafe { Box::from_raw(Box::into_raw(self.0) as *mut [u8]) }
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

        #[allow(clippy::boxed_local)] // the same signature as the real one's
        pub(crate) fn from_bytes(bytes: Box<[u8]>) -> Self {
            Self(bytes.iter().map(|&b| UnsafeCell::new(b)).collect())
        }

        pub(crate) fn into_bytes(self) -> Box<[u8]> {
            // SAFETY: the model checks that nobody writes the cells meanwhile.
            self.0.iter().map(|c| c.with(|p| unsafe { *p })).collect()
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

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(not(loom))]
use std::cell::UnsafeCell;

/// Which buffer a lane writes in: none until first used, and replaced when the producer hands
/// a full one over (see `Lane`'s protocol: only the producer replaces it, holding `tx`; the
/// producer reads it at any time, everybody else only holding `tx`).
pub(crate) struct Slot(UnsafeCell<Option<Buf>>);

impl Slot {
    pub(crate) fn new() -> Self {
        Self(UnsafeCell::new(None))
    }

    /// The buffer.
    ///
    /// # Safety
    /// Nobody replaces it during the call or while the reference is used: the caller is the
    /// lane's producer, or holds `tx`.
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> Option<&Buf> {
        #[cfg(not(loom))]
        // SAFETY: no write meanwhile (the caller's contract).
        return unsafe { (*self.0.get()).as_ref() };
        #[cfg(loom)]
        // SAFETY: the model checks the caller's contract.
        return self.0.with(|p| unsafe { (*p).as_ref() });
    }

    /// Puts `buf` in, returning the one it replaces.
    ///
    /// # Safety
    /// The caller is the producer and holds `tx`: nobody else reads it meanwhile, and no
    /// reference from [`get`](Self::get) is used after.
    pub(crate) unsafe fn replace(&self, buf: Buf) -> Option<Buf> {
        #[cfg(not(loom))]
        // SAFETY: nobody reads or writes it meanwhile (the caller's contract).
        return unsafe { (*self.0.get()).replace(buf) };
        #[cfg(loom)]
        // SAFETY: the model checks the caller's contract.
        return self.0.with_mut(|p| unsafe { (*p).replace(buf) });
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buf").field("len", &self.len()).finish()
    }
}
