//! The allocator training wants (cargo feature `mimalloc`): mimalloc, told never to hand freed
//! memory back to the system.
//!
//! Training allocates and frees tensors of megabytes every step. glibc's allocator returns blocks that
//! size to the system each time and takes page faults to get them back, which cost a quarter of a step
//! on the benchmark MLP; mimalloc keeps them. A program sets it up with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;
//!
//! fn main() {
//!     danling::alloc::keep_freed_memory();
//!     // ...
//! }
//! ```

pub use mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (the index of `mi_option_purge_delay` in `mimalloc.h`, in its
/// versions 2 and 3; the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the system. Training frees and allocates the
/// same sizes over and over (tensors every step, checkpoint buffers every epoch); memory given back
/// after mimalloc's default second of disuse comes back through page faults, which made the bare
/// training loop of the benchmark 6% slower and a checkpoint writer's buffers slow the training
/// beside it. Memory in use peaks where it would anyway, as with PyTorch's caching allocator.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it has no preconditions
    // and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_is_the_option_mimalloc_documents() {
        // SAFETY: `mi_option_get` reads an integer from mimalloc's option table.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // mimalloc 3 documents a purge delay of 1000 ms by default, which no other option has (unless
        // the environment sets it).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1000);
        }
        super::keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
