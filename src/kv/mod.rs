//! KV-cache bookkeeping on the host: the block pool (free list, prefix
//! cache). The device pages themselves belong to the model shards, and each
//! sequence's block table to the scheduler; this module only decides which
//! page is free, held or cached, and imports nothing of the crate.

pub mod block_pool;

pub use block_pool::{BlockHash, BlockId, BlockPool, BlockRef, PoolStats};
