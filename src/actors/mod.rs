//! The actix actors of the serving runtime: intake, tokenizer pool, scheduler,
//! model shards and detokenizer. (Filled in by the actor-runtime issue.)
