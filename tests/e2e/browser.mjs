// Headless Chromium as both browser tests drive it: Debian's binary
// (E2E_CHROMIUM), a fresh profile, no background network (this machine's
// network is closed, and a test must not depend on one), a fixed viewport.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
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

/**
 * Tests that run in order as one person's session: after a failed step the
 * rest are skipped (each depends on the ones before), and `onFail(n)` keeps
 * a record of the failure (a screenshot of step `n`).
 */
export function orderedSteps(timeoutMs, onFail) {
  let count = 0;
  let broken = null;
  return (name, fn) => {
    const n = ++count;
    it(name, { timeout: timeoutMs }, async (t) => {
      if (broken) { t.skip(`an earlier step failed: ${broken}`); return; }
      try {
        await fn();
      } catch (e) {
        broken = name;
        await Promise.resolve().then(() => onFail(n)).catch(() => {});
        throw e;
      }
    });
  };
}
