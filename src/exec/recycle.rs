//! Recycled activation buffers, for the length of one run. The executor hands back the float32
//! buffers of the values it frees, and the ops with large outputs take theirs from here.
//!
//! Why: a large `Vec` is a fresh `mmap` in the system allocator, so every large output of a forward
//! pass was new pages, zeroed by the kernel one page fault at a time, and unmapped again when freed.
//! On HRNet-W48 at 512×1024 that was about 1.1 GB of fresh pages per forward (280 K page faults,
//! half a second of system time). Within a run the same sizes come back again and again.
//!
//! The pool is per thread (the executor's ops allocate their outputs on the thread that runs the
//! graph) and only exists inside a [`Scope`]: outside one, [`f32_buffer`] just allocates and
//! [`give`] just drops, and when the scope ends every pooled buffer is freed, so nothing is kept
//! between runs.

use std::cell::RefCell;

/// Buffers smaller than this are left to the allocator, which reuses them well by itself.
const MIN_LEN: usize = 1 << 16;
/// At most this many floats (1 GiB) wait in a thread's pool; more are dropped.
const MAX_POOLED: usize = 1 << 28;

#[derive(Default)]
struct Pool {
    active: usize,
    free: Vec<Vec<f32>>,
    pooled: usize,
    /// Buffers of at least [`MIN_LEN`] allocated new while a scope was open.
    fresh: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// While alive, freed buffers on this thread are kept for reuse. Scopes nest; the outermost one's
/// end frees what is pooled.
pub struct Scope(());

impl Scope {
    pub fn enter() -> Self {
        POOL.with(|p| p.borrow_mut().active += 1);
        Scope(())
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            p.active -= 1;
            if p.active == 0 {
                p.free = Vec::new();
                p.pooled = 0;
            }
        });
    }
}

/// A buffer of `len` floats with unspecified contents: the smallest pooled one that fits
/// (capacity at least `len`, at most four times it), a new zeroed one otherwise.
pub(crate) fn f32_buffer(len: usize) -> Vec<f32> {
    if len >= MIN_LEN {
        let reused = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let best = p
                .free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() / 4 <= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            let Some(best) = best else {
                // A new buffer is about to be allocated: release the pooled ones first, so that
                // buffers waiting for a size that does not come back do not add to the run's peak
                // memory (W48: 950 MB peak RSS, 918 MB without the pool, 1.17 GB when kept).
                p.free = Vec::new();
                p.pooled = 0;
                p.fresh += usize::from(p.active > 0);
                return None;
            };
            let v = p.free.swap_remove(best);
            p.pooled -= v.capacity();
            Some(v)
        });
        if let Some(mut v) = reused {
            // Shrinking keeps the old values, growing zeroes the tail: no uninitialised float.
            v.resize(len, 0.0);
            return v;
        }
    }
    vec![0.0; len]
}

/// Hands `v` to this thread's pool when a scope is open and it is worth keeping.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() < MIN_LEN {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.active > 0 && p.pooled + v.capacity() <= MAX_POOLED {
            p.pooled += v.capacity();
            p.free.push(v);
        }
    });
}

/// How many large buffers this thread has allocated new inside scopes: what a run's
/// [`crate::exec::RunStats::fresh_buffers`] counts.
pub fn fresh() -> usize {
    POOL.with(|p| p.borrow().fresh)
}

/// Floats waiting in this thread's pool.
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().pooled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_within_a_scope_and_frees_at_its_end() {
        let n = MIN_LEN * 8;
        {
            let _run = Scope::enter();
            let v = vec![7.0f32; n];
            let at = v.as_ptr() as usize;
            give(v);
            assert_eq!(pooled(), n);
            // A smaller request within a factor four takes the same buffer, old values and all.
            let w = f32_buffer(n / 4);
            assert_eq!((w.as_ptr() as usize, w.len(), w[0]), (at, n / 4, 7.0));
            assert_eq!(pooled(), 0);
            give(w);
            // Under a quarter of its capacity: a new zeroed buffer (the allocator may well hand
            // out the released one's address again: only the values tell them apart), and the
            // pool is released.
            let small = f32_buffer(n / 4 - 1);
            assert!(small.iter().all(|&x| x == 0.0));
            assert_eq!(pooled(), 0);
            give(small);
            assert_eq!(pooled(), n / 4 - 1);
        }
        assert_eq!(pooled(), 0);
    }

    #[test]
    fn no_scope_no_pool() {
        give(vec![1.0f32; MIN_LEN]);
        assert_eq!(pooled(), 0);
        // Tiny buffers are never pooled.
        let _run = Scope::enter();
        give(vec![1.0f32; 8]);
        assert_eq!(pooled(), 0);
    }

    #[test]
    fn growing_a_reused_buffer_zeroes_the_tail() {
        let _run = Scope::enter();
        let mut v = Vec::with_capacity(MIN_LEN * 2);
        v.extend(std::iter::repeat_n(3.0f32, MIN_LEN));
        give(v);
        let w = f32_buffer(MIN_LEN * 2 - 1);
        assert_eq!(w[0], 3.0);
        assert!(w[MIN_LEN..].iter().all(|&x| x == 0.0));
    }
}
