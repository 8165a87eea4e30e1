//! Where the recorded reference outputs live: `tests/data/` in this
//! repository (llama.cpp's greedy outputs for the default model, transformers'
//! logits for the tiny gpt-oss fixtures; `tests/data/README.md` says where
//! each came from). Tests read them from nowhere else, so a fresh clone in
//! any folder has everything it needs.

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    assert!(
        dir.is_dir(),
        "the reference data directory {} is missing (it is part of the repository)",
        dir.display()
    );
    dir
}
