//! KV-cache bookkeeping on the host: the block pool (free list, prefix cache)
//! and per-sequence block tables. The device pages themselves belong to the
//! model shards (`crate::model`); this module only decides which page holds
//! which tokens.

pub mod block_pool;

pub use block_pool::{BlockHash, BlockId, BlockPool, BlockRef, PoolStats};
