//! Where the decoder assembles a frame that arrives split across feeds.

/// Caller-provided room for one frame.
///
/// Implemented for `[u8; N]`, `&mut [u8]`, `heapless::Vec<u8, N>` and, with the `std` feature,
/// `Vec<u8>` and `Box<[u8]>`.
///
/// The decoder asks for room only up to the payload bytes that have actually arrived, so a
/// growable storage (`Vec<u8>`) follows the data: a header declaring a large frame costs
/// nothing until its bytes come, and the declared length is checked against the maximum first.
pub trait Storage {
    /// The longest frame this storage can hold.
    fn capacity(&self) -> usize;
    /// The first `len` writable bytes (`len <= capacity()`), keeping what was written before;
    /// `None` if the storage cannot provide them.
    fn slot(&mut self, len: usize) -> Option<&mut [u8]>;
    /// The first `len` bytes, as last written through [`slot`](Self::slot).
    fn filled(&self, len: usize) -> Option<&[u8]>;
}

impl<const N: usize> Storage for [u8; N] {
    fn capacity(&self) -> usize {
        N
    }
    #[inline]
    fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        self.get_mut(..len)
    }
    #[inline]
    fn filled(&self, len: usize) -> Option<&[u8]> {
        self.get(..len)
    }
}

impl Storage for &mut [u8] {
    fn capacity(&self) -> usize {
        self.len()
    }
    #[inline]
    fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        self.get_mut(..len)
    }
    #[inline]
    fn filled(&self, len: usize) -> Option<&[u8]> {
        self.get(..len)
    }
}

impl<const N: usize> Storage for heapless::Vec<u8, N> {
    fn capacity(&self) -> usize {
        N
    }
    #[inline]
    fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.len() < len {
            self.resize(len, 0).ok()?;
        }
        self.get_mut(..len)
    }
    #[inline]
    fn filled(&self, len: usize) -> Option<&[u8]> {
        self.get(..len)
    }
}

#[cfg(feature = "std")]
impl Storage for alloc::vec::Vec<u8> {
    fn capacity(&self) -> usize {
        usize::MAX
    }
    #[inline]
    fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.len() < len {
            self.resize(len, 0);
        }
        self.get_mut(..len)
    }
    #[inline]
    fn filled(&self, len: usize) -> Option<&[u8]> {
        self.get(..len)
    }
}

#[cfg(feature = "std")]
impl Storage for alloc::boxed::Box<[u8]> {
    fn capacity(&self) -> usize {
        self.len()
    }
    #[inline]
    fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        self.get_mut(..len)
    }
    #[inline]
    fn filled(&self, len: usize) -> Option<&[u8]> {
        self.get(..len)
    }
}
