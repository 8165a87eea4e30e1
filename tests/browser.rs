//! The chat page end to end in a real headless browser: runs
//! `scripts/test-e2e` with this build's `wgserve`, which serves the default
//! model and drives `web/` in Debian's Chromium (tests/e2e/chat.test.mjs):
//! a streamed answer with its stats, Stop, New chat, the history after a
//! reload, an over-long prompt's error, recovery, and (on a canned stream)
//! a reasoning model's thoughts collapsed under the answer; then, on a second
//! server started with `--api-key` (tests/e2e/keys.test.mjs), the page's
//! prompt for the key, a 401, a wrong key, the right one sent as a Bearer
//! token and remembered after a reload. The script installs
//! Chromium and playwright-core when missing; its screenshots land in
//! `target/e2e-screenshots/`.

use std::path::Path;
use std::process::Command;

#[test]
fn chat_page_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("scripts/test-e2e"))
        .arg(env!("CARGO_BIN_EXE_wgserve"))
        .current_dir(root)
        .status()
        .expect("bash runs scripts/test-e2e");
    assert!(
        status.success(),
        "scripts/test-e2e failed ({status}): its output is above; screenshots are in \
         target/e2e-screenshots/, the server's log is target/e2e-server.log"
    );
}
