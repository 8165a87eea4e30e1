//! Where the shared reference outputs live: `$WGSERVE_REFERENCE_DIR` when set,
//! else `../shared/reference` next to the repository, else
//! `/work/shared/reference`. A missing directory fails the test that needs it,
//! with a message saying where it looked.

use std::path::PathBuf;

pub fn reference_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("WGSERVE_REFERENCE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"),
            PathBuf::from("/work/shared/reference"),
        ])
        .collect();
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the shared reference directory is missing; looked in {candidates:?} \
                 (set WGSERVE_REFERENCE_DIR)"
            )
        })
}
