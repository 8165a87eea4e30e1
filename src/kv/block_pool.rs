//! The KV block pool: which of the device's KV pages are free, which are held
//! by sequences, and which hold a cached prompt prefix.
//!
//! The device memory itself belongs to the model shards; this pool only hands
//! out *block ids* (global: every shard has the same number of blocks, so one
//! id names the same page in every layer of every shard). The pool lives inside
//! one owner (the Scheduler actor, or `generate`'s loop) and is never shared
//! across threads: handles are `Rc`, and a [`BlockRef`] gives its block back
//! when dropped, so no path can leak a block.
//!
//! Invariants:
//! - A block is in exactly one state: *held* (`refs > 0`), *free and cached*
//!   (`refs == 0`, has a hash, on the free list, findable by its hash), or
//!   *free* (`refs == 0`, no hash, on the free list).
//! - The free list is ordered by release time: allocation takes from the head,
//!   so the least recently released cached block is evicted first (LRU), and
//!   a block released just now is the last to be reused. A sequence's
//!   blocks are released tail-first (the Scheduler's `Sequence` does so), so
//!   its deepest blocks are evicted before the prefix blocks they chain from.
//! - Only full blocks are cached. A block's hash chains its parent's hash with
//!   its own token ids, so a hit on block i implies the whole prefix matches;
//!   the tokens are stored too, so a 64-bit hash collision can never return
//!   another prompt's KV.
//! - All operations are O(1) except hashing, which is O(block_size).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

pub type BlockId = u32;

const NIL: u32 = u32::MAX;

/// A prefix-cache key: the chained hash of a full block's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHash(pub u64);

impl BlockHash {
    /// The hash of a full block whose tokens are `tokens`, following the block
    /// whose hash is `parent` (None for the first block of a sequence).
    pub fn chain(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        // SipHash with fixed keys: stable within a process, which is all a
        // cache that lives in memory needs.
        let mut h = std::hash::DefaultHasher::new();
        parent.map(|p| p.0).hash(&mut h);
        tokens.hash(&mut h);
        BlockHash(h.finish())
    }
}

#[derive(Debug)]
struct Meta {
    refs: u32,
    /// Set while the block is in the prefix cache.
    cached: Option<(BlockHash, Box<[u32]>)>,
    prev: u32,
    next: u32,
    on_free_list: bool,
}

#[derive(Debug)]
struct Inner {
    blocks: Vec<Meta>,
    head: u32,
    tail: u32,
    n_free: usize,
    by_hash: HashMap<BlockHash, BlockId>,
    stats: PoolStats,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks looked up in the prefix cache.
    pub cache_queries: u64,
    /// Of those, found.
    pub cache_hits: u64,
    /// Cached blocks overwritten to make room.
    pub evictions: u64,
}

/// A handle to the pool. Clones share the same pool (single-threaded).
#[derive(Debug, Clone)]
pub struct BlockPool {
    inner: Rc<RefCell<Inner>>,
    block_size: usize,
}

/// One held reference to a block; the block returns to the pool when the
/// last reference is dropped.
#[derive(Debug)]
pub struct BlockRef {
    id: BlockId,
    pool: Rc<RefCell<Inner>>,
}

impl BlockRef {
    pub fn id(&self) -> BlockId {
        self.id
    }
}

impl Drop for BlockRef {
    fn drop(&mut self) {
        self.pool.borrow_mut().release(self.id);
    }
}

impl Inner {
    fn unlink(&mut self, id: u32) {
        let (prev, next) = {
            let m = &self.blocks[id as usize];
            debug_assert!(m.on_free_list);
            (m.prev, m.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.blocks[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.blocks[next as usize].prev = prev;
        }
        let m = &mut self.blocks[id as usize];
        m.prev = NIL;
        m.next = NIL;
        m.on_free_list = false;
        self.n_free -= 1;
    }

    fn push_tail(&mut self, id: u32) {
        let tail = self.tail;
        {
            let m = &mut self.blocks[id as usize];
            debug_assert!(!m.on_free_list);
            m.prev = tail;
            m.next = NIL;
            m.on_free_list = true;
        }
        if tail == NIL {
            self.head = id;
        } else {
            self.blocks[tail as usize].next = id;
        }
        self.tail = id;
        self.n_free += 1;
    }

    fn release(&mut self, id: BlockId) {
        let m = &mut self.blocks[id as usize];
        assert!(m.refs > 0, "block {id} released more often than taken");
        m.refs -= 1;
        if m.refs == 0 {
            self.push_tail(id);
        }
    }
}

impl BlockPool {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        assert!(num_blocks < NIL as usize && block_size > 0);
        let mut inner = Inner {
            blocks: (0..num_blocks)
                .map(|_| Meta {
                    refs: 0,
                    cached: None,
                    prev: NIL,
                    next: NIL,
                    on_free_list: false,
                })
                .collect(),
            head: NIL,
            tail: NIL,
            n_free: 0,
            by_hash: HashMap::new(),
            stats: PoolStats::default(),
        };
        for id in 0..num_blocks as u32 {
            inner.push_tail(id);
        }
        Self {
            inner: Rc::new(RefCell::new(inner)),
            block_size,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.inner.borrow().blocks.len()
    }

    /// Blocks that can be allocated now (free, cached or not).
    pub fn num_free(&self) -> usize {
        self.inner.borrow().n_free
    }

    pub fn num_used(&self) -> usize {
        self.num_blocks() - self.num_free()
    }

    pub fn stats(&self) -> PoolStats {
        self.inner.borrow().stats
    }

    /// Takes the least recently released free block, evicting its cached
    /// prefix if it had one. `None` when every block is held.
    pub fn allocate(&self) -> Option<BlockRef> {
        let mut g = self.inner.borrow_mut();
        let id = g.head;
        if id == NIL {
            return None;
        }
        g.unlink(id);
        if let Some((hash, _)) = g.blocks[id as usize].cached.take() {
            g.by_hash.remove(&hash);
            g.stats.evictions += 1;
        }
        g.blocks[id as usize].refs = 1;
        drop(g);
        Some(BlockRef {
            id,
            pool: self.inner.clone(),
        })
    }

    /// Looks up a full block in the prefix cache and takes a reference to it.
    pub fn lookup(&self, hash: BlockHash, tokens: &[u32]) -> Option<BlockRef> {
        let mut g = self.inner.borrow_mut();
        g.stats.cache_queries += 1;
        let id = *g.by_hash.get(&hash)?;
        let same = g.blocks[id as usize]
            .cached
            .as_ref()
            .is_some_and(|(_, t)| &t[..] == tokens);
        if !same {
            return None;
        }
        g.stats.cache_hits += 1;
        if g.blocks[id as usize].refs == 0 {
            g.unlink(id);
        }
        g.blocks[id as usize].refs += 1;
        drop(g);
        Some(BlockRef {
            id,
            pool: self.inner.clone(),
        })
    }

    /// Records that `block` is full and holds the KV of `tokens` following the
    /// prefix whose hash is `hash`'s parent. If an equal block is already
    /// cached the call changes nothing (the existing one stays the cached copy).
    pub fn register(&self, block: &BlockRef, hash: BlockHash, tokens: &[u32]) {
        debug_assert_eq!(tokens.len(), self.block_size);
        let mut g = self.inner.borrow_mut();
        if g.by_hash.contains_key(&hash) || g.blocks[block.id as usize].cached.is_some() {
            return;
        }
        g.by_hash.insert(hash, block.id);
        g.blocks[block.id as usize].cached = Some((hash, tokens.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_until_empty_then_drop_frees() {
        let pool = BlockPool::new(4, 16);
        let held: Vec<_> = (0..4).map(|_| pool.allocate().unwrap()).collect();
        let mut ids: Vec<_> = held.iter().map(|b| b.id()).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        assert!(pool.allocate().is_none());
        assert_eq!(pool.num_free(), 0);
        drop(held);
        assert_eq!(pool.num_free(), 4);
        assert_eq!(pool.num_used(), 0);
    }

    #[test]
    fn shared_block_frees_after_last_reference() {
        // A prefix-cache hit on a block a sequence still holds is how a
        // block gets a second holder.
        let pool = BlockPool::new(2, 4);
        let toks = [1, 2, 3, 4];
        let h = BlockHash::chain(None, &toks);
        let a = pool.allocate().unwrap();
        pool.register(&a, h, &toks);
        let b = pool.lookup(h, &toks).expect("a held block is found too");
        assert_eq!(b.id(), a.id());
        drop(a);
        assert_eq!(pool.num_free(), 1);
        drop(b);
        assert_eq!(pool.num_free(), 2);
    }

    #[test]
    fn cached_block_is_found_and_reused_until_evicted_lru() {
        let pool = BlockPool::new(3, 2);
        let toks = [5, 6];
        let h = BlockHash::chain(None, &toks);
        let a = pool.allocate().unwrap();
        let id = a.id();
        pool.register(&a, h, &toks);
        drop(a);
        // Free but cached: lookup revives it.
        let again = pool.lookup(h, &toks).expect("cache hit");
        assert_eq!(again.id(), id);
        assert_eq!(pool.num_free(), 2);
        drop(again);
        // Wrong tokens under the same hash never match.
        assert!(pool.lookup(h, &[5, 7]).is_none());
        // The cached block was released last, so two allocations take the
        // other blocks first and the third evicts it.
        let x = pool.allocate().unwrap();
        let y = pool.allocate().unwrap();
        assert_ne!(x.id(), id);
        assert_ne!(y.id(), id);
        // Still cached: found again (and given back, the only free block).
        assert_eq!(pool.lookup(h, &toks).map(|b| b.id()), Some(id));
        let z = pool.allocate().unwrap();
        assert_eq!(z.id(), id);
        assert!(pool.lookup(h, &toks).is_none());
        assert_eq!(pool.stats().evictions, 1);
        assert_eq!(pool.stats().cache_hits, 2);
    }

    #[test]
    fn chained_hash_depends_on_the_prefix() {
        let a = BlockHash::chain(None, &[1, 2]);
        let b = BlockHash::chain(Some(a), &[3, 4]);
        let c = BlockHash::chain(Some(BlockHash::chain(None, &[9, 9])), &[3, 4]);
        assert_ne!(b, c);
        assert_eq!(b, BlockHash::chain(Some(a), &[3, 4]));
    }

    /// Leading full blocks of `tokens` found in the cache, walked as the
    /// Scheduler walks a new prompt (each hit's hash is the next's parent).
    fn cached_prefix(pool: &BlockPool, tokens: &[u32]) -> Vec<BlockRef> {
        let mut parent = None;
        let mut found = Vec::new();
        for chunk in tokens.chunks_exact(pool.block_size()) {
            let h = BlockHash::chain(parent, chunk);
            match pool.lookup(h, chunk) {
                Some(b) => found.push(b),
                None => break,
            }
            parent = Some(h);
        }
        found
    }

    #[test]
    fn a_cached_prefix_matches_only_along_its_chain() {
        let pool = BlockPool::new(4, 2);
        let toks = [1, 2, 3, 4, 5, 6];
        let mut parent = None;
        let mut held = Vec::new();
        for chunk in toks.chunks(2).take(2) {
            let h = BlockHash::chain(parent, chunk);
            let b = pool.allocate().unwrap();
            pool.register(&b, h, chunk);
            held.push(b);
            parent = Some(h);
        }
        assert_eq!(cached_prefix(&pool, &toks).len(), 2);
        assert_eq!(cached_prefix(&pool, &[1, 2, 9, 9, 5, 6]).len(), 1);
        assert_eq!(cached_prefix(&pool, &[0, 2, 3, 4]).len(), 0);
    }
}
