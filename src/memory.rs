//! The process's allocator: the system one, keeping freed large blocks for reuse during calls.
//!
//! A batch's prefill or SigLIP makes hundreds of tensors of hundreds of MB (16 prompts of 600
//! tokens: the MLP's intermediate alone is 435 MB per layer). glibc serves every block over
//! 32 MB with a fresh `mmap` and unmaps it when freed, so each one is page-faulted and zeroed by
//! the kernel again: measured on the 1B, 16 pairs' SigLIP + prefill spent 66 of its 306 CPU
//! seconds in the kernel (22 million page faults). Inside a [`Reuse`] scope (each library call
//! from Python) a freed block of [`LARGE`] bytes or more is kept, and a later request of the same
//! size class takes it back without a page fault.
//!
//! Kept blocks are capped at [`keep_limit`] bytes (2 GiB, or an eighth of the machine's memory
//! if less): a freed block that would pass the cap goes back to the system, so peak memory during
//! a call is at most that much above what the system allocator alone would reach. Blocks are
//! never evicted to admit others: with the same sizes coming back every layer, the blocks
//! admitted stay and keep being reused. Kept blocks are returned when the last scope ends.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks from this size on go through the reuse cache (and are rounded up to [`CLASS`]; a
/// large block is always allocated and freed with its class layout, in a scope or not). 2 MiB
/// takes in one prompt's activations (604 tokens × 2048 × 4 B = 4.9 MB; SigLIP's 577 × 1024 × 4
/// B = 2.4 MB), which glibc otherwise hands back and page-faults again layer after layer.
pub const LARGE: usize = 2 << 20;
/// Large blocks are allocated in multiples of this, so that similar sizes share a class.
const CLASS: usize = 1 << 20;
/// At most this many blocks are kept.
const SLOTS: usize = 256;
/// The most bytes kept, whatever the machine.
const KEEP_MAX: usize = 2 << 30;

/// The allocator janus-rs installs (`#[global_allocator]` in `lib.rs`).
pub struct ReusingAllocator;

#[derive(Clone, Copy)]
struct Kept {
    ptr: *mut u8,
    layout: Layout,
}

struct Cache {
    blocks: [Option<Kept>; SLOTS],
}

// SAFETY: the kept blocks are owned by the cache alone (no one else holds their pointers).
unsafe impl Send for Cache {}

static CACHE: Mutex<Cache> = Mutex::new(Cache::EMPTY);
static SCOPES: AtomicUsize = AtomicUsize::new(0);

/// The most bytes kept for reuse: 2 GiB, or an eighth of the memory if less (1 GiB where the
/// total can't be read).
pub fn keep_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib << 10)
        });
        total.map_or(1 << 30, |t| (t / 8).min(KEEP_MAX))
    })
}

/// The layout a large request is allocated and freed with: its size rounded up to the class,
/// aligned to a cache line at least (so blocks of f32, bf16 and u8 tensors share classes).
fn class_layout(layout: Layout) -> Layout {
    let size = layout
        .size()
        .checked_next_multiple_of(CLASS)
        .unwrap_or(layout.size());
    Layout::from_size_align(size, layout.align().max(64)).unwrap_or(layout)
}

/// Large blocks from the system. On Linux each is a mapping of its own, made and unmapped
/// directly rather than through glibc (measured on the 1B, f32, 2-core VM: loading 7.4–7.5 →
/// 4.5–5.7 s; the 247 MB of logits of a 604-token `forward` copied into a numpy array in 0.13
/// instead of 0.53 s). Transparent huge pages (`madvise`) were tried too: that copy took 0.06
/// s, but loading 10–17 s, and whole forwards did not change.
mod large {
    use std::alloc::{GlobalAlloc, Layout, System};

    /// The alignment a fresh mapping always has.
    #[cfg(target_os = "linux")]
    const PAGE: usize = 4096;

    /// A block of `class` (zeroed if asked; fresh mappings are zero already).
    ///
    /// # Safety
    /// `class` has a non-zero size.
    pub unsafe fn alloc(class: Layout, zeroed: bool) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if class.align() <= PAGE {
            // SAFETY: a private anonymous mapping of the block's size.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    class.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            return if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            };
        }
        // SAFETY: forwarded.
        unsafe {
            if zeroed {
                System.alloc_zeroed(class)
            } else {
                System.alloc(class)
            }
        }
    }

    /// # Safety
    /// `ptr` came from [`alloc`] with `class`.
    pub unsafe fn dealloc(ptr: *mut u8, class: Layout) {
        #[cfg(target_os = "linux")]
        if class.align() <= PAGE {
            // SAFETY: the mapping made by `alloc`.
            unsafe { libc::munmap(ptr.cast(), class.size()) };
            return;
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, class) }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    const EMPTY: Cache = Cache {
        blocks: [None; SLOTS],
    };

    /// A block for `class` (a class layout): a kept one of the same class when there is one,
    /// else a new one from the system.
    ///
    /// # Safety
    /// `class` has a non-zero size; `zero_len` ≤ its size.
    unsafe fn alloc(&mut self, class: Layout, zero_len: Option<usize>) -> *mut u8 {
        let slot = self
            .blocks
            .iter_mut()
            .find(|b| b.is_some_and(|k| k.layout == class));
        if let Some(kept) = slot.and_then(Option::take) {
            if let Some(n) = zero_len {
                // SAFETY: the block holds at least class.size() ≥ n bytes.
                unsafe { std::ptr::write_bytes(kept.ptr, 0, n) };
            }
            return kept.ptr;
        }
        // SAFETY: a non-zero size; fresh pages from the system are already zero.
        unsafe {
            match zero_len {
                Some(_) => large::alloc(class, true),
                None => large::alloc(class, false),
            }
        }
    }

    /// Keep a freed block if it fits under `limit` bytes kept (and a slot is free); otherwise
    /// return it to the system.
    ///
    /// # Safety
    /// `ptr` was allocated by System with `class`, and is not used after this.
    unsafe fn free(&mut self, ptr: *mut u8, class: Layout, limit: usize) {
        let room = self.kept_bytes() + class.size() <= limit;
        match self
            .blocks
            .iter_mut()
            .find(|b| b.is_none())
            .filter(|_| room)
        {
            Some(slot) => *slot = Some(Kept { ptr, layout: class }),
            // SAFETY: forwarded to the caller.
            None => unsafe { large::dealloc(ptr, class) },
        }
    }

    /// Return every kept block to the system.
    fn release_all(&mut self) {
        for k in self.blocks.iter_mut().filter_map(Option::take) {
            // SAFETY: the block came from System with exactly this layout.
            unsafe { large::dealloc(k.ptr, k.layout) };
        }
    }

    fn kept_bytes(&self) -> usize {
        self.blocks.iter().flatten().map(|k| k.layout.size()).sum()
    }
}

fn in_scope() -> bool {
    SCOPES.load(Ordering::Acquire) > 0
}

// SAFETY: every large block is allocated and freed by System with its class layout, whether
// it passes through the cache or not; a kept block is handed out to one requester at a time.
unsafe impl GlobalAlloc for ReusingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY (all arms): forwarded; large sizes are non-zero.
        unsafe {
            match (layout.size() >= LARGE, in_scope()) {
                (false, _) => System.alloc(layout),
                (true, false) => large::alloc(class_layout(layout), false),
                (true, true) => lock().alloc(class_layout(layout), None),
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY (all arms): forwarded; large sizes are non-zero.
        unsafe {
            match (layout.size() >= LARGE, in_scope()) {
                (false, _) => System.alloc_zeroed(layout),
                (true, false) => large::alloc(class_layout(layout), true),
                (true, true) => lock().alloc(class_layout(layout), Some(layout.size())),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY (all arms): a large block was allocated with its class layout.
        unsafe {
            match (layout.size() >= LARGE, in_scope()) {
                (false, _) => System.dealloc(ptr, layout),
                (true, false) => large::dealloc(ptr, class_layout(layout)),
                // keep_limit() was computed by Reuse::begin, before the scope opened.
                (true, true) => lock().free(ptr, class_layout(layout), keep_limit()),
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < LARGE && new_size < LARGE {
            // SAFETY: forwarded.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if layout.size() >= LARGE
            && new_size >= LARGE
            && class_layout(layout).size() == class_layout(new_layout).size()
        {
            // Same class: the block already holds new_size bytes.
            return ptr;
        }
        // SAFETY: as the trait's default: a new block, the common prefix copied, the old freed.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// While a `Reuse` lives, freed large blocks are kept for reuse; when the last one is dropped,
/// they go back to the system.
pub struct Reuse(());

impl Reuse {
    pub fn begin() -> Self {
        // Read /proc/meminfo here, never inside the allocator (the first call allocates).
        keep_limit();
        SCOPES.fetch_add(1, Ordering::AcqRel);
        Reuse(())
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        if SCOPES.fetch_sub(1, Ordering::AcqRel) == 1 {
            lock().release_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(size: usize) -> Layout {
        class_layout(Layout::from_size_align(size, 64).unwrap())
    }

    #[test]
    fn a_freed_block_serves_the_next_request_of_its_class() {
        let mut cache = Cache::EMPTY;
        // SAFETY: non-zero class layouts; every block is freed through the cache or released.
        unsafe {
            let a = cache.alloc(class(LARGE + 5), None);
            a.write_bytes(7, LARGE + 5);
            cache.free(a, class(LARGE + 5), usize::MAX);
            assert_eq!(cache.kept_bytes(), LARGE + CLASS);
            // Another size in the same class: the same block, zeroed on request.
            let b = cache.alloc(class(LARGE + 1000), Some(LARGE + 1000));
            assert_eq!(b, a);
            assert!(std::slice::from_raw_parts(b, LARGE + 1000)
                .iter()
                .all(|&v| v == 0));
            assert_eq!(cache.kept_bytes(), 0);
            // A bigger class is not served by a smaller block.
            cache.free(b, class(LARGE + 1000), usize::MAX);
            let c = cache.alloc(class(3 * LARGE), None);
            assert_ne!(c, b);
            cache.free(c, class(3 * LARGE), usize::MAX);
        }
        cache.release_all();
        assert_eq!(cache.kept_bytes(), 0);
    }

    #[test]
    fn kept_bytes_stay_under_the_limit_and_admitted_blocks_keep_being_reused() {
        // A prefill-like pattern: every "layer" allocates the same sizes, then frees them all.
        let mut cache = Cache::EMPTY;
        let limit = 40 << 20;
        let sizes = [9 << 20, 30 << 20, 9 << 20, 12 << 20];
        let mut hits_per_layer = Vec::new();
        for _layer in 0..5 {
            let mut blocks = Vec::new();
            let mut hits = 0;
            for &s in &sizes {
                let l = class(s);
                let kept_before = cache.kept_bytes();
                // SAFETY: non-zero class layouts, freed below through the cache.
                let p = unsafe { cache.alloc(l, None) };
                hits += usize::from(cache.kept_bytes() < kept_before);
                blocks.push((p, l));
            }
            for (p, l) in blocks {
                // SAFETY: allocated above with l.
                unsafe { cache.free(p, l, limit) };
                assert!(cache.kept_bytes() <= limit);
            }
            hits_per_layer.push(hits);
        }
        // Layer 0 misses everything; the blocks that fit (9 + 30 MB) are then reused each layer.
        assert_eq!(hits_per_layer, [0, 2, 2, 2, 2]);
        cache.release_all();
    }

    #[test]
    fn large_vectors_keep_their_contents_through_the_global_allocator() {
        let _scope = Reuse::begin();
        let mut v: Vec<u64> = (0..(LARGE / 8 + 3) as u64).collect();
        v.reserve(LARGE);
        v.shrink_to_fit();
        v.truncate(LARGE / 16);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        let z = vec![0u32; LARGE];
        assert!(z.iter().all(|&x| x == 0));
        assert!(keep_limit() >= 1 << 20 && keep_limit() <= KEEP_MAX);
    }

    /// Large blocks outside a scope: page-aligned, zeroed on request, written end to end,
    /// released.
    #[test]
    fn large_blocks_from_the_system_are_aligned_and_zeroed() {
        for size in [LARGE, LARGE + 1, 3 * LARGE + 12345] {
            let l = class(size);
            // SAFETY: a non-zero class layout; the block is released with it.
            unsafe {
                let p = large::alloc(l, true);
                assert!(!p.is_null());
                assert_eq!(p as usize % 64, 0);
                let bytes = std::slice::from_raw_parts_mut(p, l.size());
                assert!(bytes.iter().all(|&b| b == 0));
                bytes.fill(0xAB);
                large::dealloc(p, l);
            }
        }
    }
}
