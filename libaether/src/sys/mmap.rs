//! A shared read-write mapping of a file descriptor (`nix`'s mmap), unmapped on drop.

#[cfg(not(miri))]
use nix::sys::mman::{self, MapFlags, ProtFlags};
use std::io;
#[cfg(not(miri))]
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; all access
// to it goes through atomics or bounds-checked volatile copies in `segment`/`ring`.
unsafe impl Send for Mapping {}
// SAFETY: as above: `Mapping` hands out only raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared and read-write; `populate` faults the
    /// pages in here, at open, instead of on the data path during the ring's
    /// first lap (a failed populate is not an error; faults then happen
    /// later). Populating commits the memory: clients that use a topic do,
    /// the daemon that only makes it does not.
    pub fn shared(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Mapping> {
        Mapping::new(fd, len, populate, true)
    }

    /// A read-only shared mapping (of a read-only descriptor, for instance:
    /// the kernel then refuses any later `mprotect` to writable).
    pub fn shared_readonly(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Mapping> {
        Mapping::new(fd, len, populate, false)
    }

    #[cfg(miri)]
    fn new(_fd: BorrowedFd<'_>, len: usize, _populate: bool, _writable: bool) -> io::Result<Mapping> {
        // Under Miri: zeroed, page-aligned heap memory (as a fresh memfd reads).
        let layout = std::alloc::Layout::from_size_align(len, 4096)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping size"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: the layout's size is non-zero.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Mapping { ptr, len })
    }

    #[cfg(not(miri))]
    fn new(fd: BorrowedFd<'_>, len: usize, populate: bool, writable: bool) -> io::Result<Mapping> {
        let len = NonZeroUsize::new(len).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        // SAFETY: a fresh mapping at an address the kernel chooses (none given),
        // so no existing memory is replaced; `fd` is open for the call.
        let p = unsafe {
            mman::mmap(
                None,
                len,
                if writable {
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
                } else {
                    ProtFlags::PROT_READ
                },
                if populate {
                    MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE
                } else {
                    MapFlags::MAP_SHARED
                },
                fd,
                0,
            )
        }?;
        Ok(Mapping {
            ptr: p.cast(),
            len: len.get(),
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    #[cfg(miri)]
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this size and alignment.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                std::alloc::Layout::from_size_align_unchecked(self.len, 4096),
            )
        }
    }

    #[cfg(not(miri))]
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the
        // mapping past its owner's lifetime.
        let _ = unsafe { mman::munmap(self.ptr.cast(), self.len) };
    }
}
