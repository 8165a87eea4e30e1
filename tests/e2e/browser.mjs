// Headless Chromium as both browser tests drive it: Debian's binary
// (E2E_CHROMIUM), a fresh profile, no background network (this machine's
// network is closed, and a test must not depend on one), a fixed viewport.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';

/** Starts Chromium on a new profile; `close()` ends it and removes the profile. */
export async function launch(profilePrefix) {
  const userDataDir = mkdtempSync(join(tmpdir(), profilePrefix));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  const page = context.pages()[0] || await context.newPage();
  const close = async () => {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { page, close };
}
