// The chat page on a server that requires an API key, in headless Chromium.
// Run by scripts/test-e2e after chat.test.mjs; this file starts its own
// wgserve (WGSERVE_BIN, WGSERVE_MODEL_FILE) with `--api-key`, so the key
// server never disturbs the other test's server.
//
// A person opens the page without a key: instead of a broken chat the page
// says the server needs a key and offers a field for it; a message sent
// anyway fails with a 401 that says the same; a wrong key is refused; the
// right one unlocks the model, is sent as `Authorization: Bearer`, and is
// remembered after a reload.

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, orderedSteps } from './browser.mjs';

const BIN = process.env.WGSERVE_BIN || 'target/debug/wgserve';
const MODEL = process.env.WGSERVE_MODEL_FILE || 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const SHOTS = process.env.E2E_SCREENSHOTS || 'target/e2e-screenshots';
const KEY = 'e2e-key-7f3a';
const LOAD_MS = 300_000;
const MODEL_WAIT_MS = 150_000;
const UI_WAIT_MS = 10_000;
const STEP_MS = 240_000;

let server;
let base;
let closeBrowser;
let page;
const chatAuth = []; // Authorization header of each POST v1/chat/completions
const pageErrors = [];

const step = orderedSteps(STEP_MS, (n) => page?.screenshot({ path: join(SHOTS, `keys-failed-${n}.png`), fullPage: true }));

/** Starts `wgserve serve --api-key` on a free port; resolves with its URL once ready. */
function startServer() {
  return new Promise((resolve, reject) => {
    // None of the caller's WGSERVE_* settings: every setting is a flag here.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WGSERVE_')));
    server = spawn(BIN, ['serve', '--host', '127.0.0.1', '--port', '0', '--model', MODEL, '--web-dir', 'web',
      '--max-model-len', '512', '--api-key', KEY], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let log = '';
    const timer = setTimeout(() => reject(new Error(`wgserve --api-key was not ready after ${LOAD_MS} ms:\n${log.slice(-2000)}`)), LOAD_MS);
    server.stderr.on('data', (d) => { log += d; });
    server.stdout.on('data', (d) => {
      out += d;
      const m = /ready: (http:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(new URL(m[1].replace(/\/?$/, '/')).href); }
    });
    server.on('exit', (code) => { clearTimeout(timer); reject(new Error(`wgserve exited (${code}) before it was ready:\n${log.slice(-2000)}`)); });
  });
}

const sel = {
  messages: '[data-testid="messages"] [data-testid="message"]',
  lastAssistant: '[data-testid="message"][data-role="assistant"]',
  error: '[data-testid="message"][data-role="error"]',
};

async function waitIdleWith(n) {
  await page.waitForFunction(
    ([s, want]) => document.body.dataset.state === 'idle' && document.querySelectorAll(s).length === want,
    [sel.messages, n], { timeout: MODEL_WAIT_MS, polling: 100 });
}

async function ask(text) {
  const input = page.getByTestId('input');
  await input.fill(text);
  await input.press('Enter');
}

describe('the chat page on a server with an API key', { timeout: 900_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    base = await startServer();
    ({ page, close: closeBrowser } = await launch('wgserve-e2e-keys-'));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) chatAuth.push(r.headers().authorization ?? null);
    });
  });

  after(async () => {
    await closeBrowser?.();
    server?.kill();
  });

  step('without a key the page asks for one instead of failing', async () => {
    const health = await fetch(new URL('health', base));
    assert.equal(health.status, 200, '/health is public');
    assert.equal((await fetch(new URL('v1/models', base))).status, 401, 'the API is not');
    await page.goto(base);
    await page.waitForSelector('#model[data-status="locked"]', { timeout: UI_WAIT_MS });
    assert.equal(await page.getByTestId('model-name').textContent(), 'API key needed');
    const prompt = page.getByTestId('key-prompt');
    assert.ok(await prompt.isVisible(), 'the key prompt is shown');
    assert.match(await page.getByTestId('key-prompt-text').textContent(), /needs an API key/);
    await page.screenshot({ path: join(SHOTS, 'keys-prompt.png'), fullPage: true });
  });

  step('a message sent without the key gets a clear 401', async () => {
    await ask('Hello?');
    await waitIdleWith(2);
    const error = page.locator(sel.error);
    assert.ok(await error.isVisible(), 'the error is shown in the conversation');
    assert.match(await error.textContent(), /needs a valid API key \(401\)/);
    assert.equal(chatAuth.at(-1), null, 'no Authorization header was sent without a key');
    assert.ok(await page.getByTestId('key-prompt').isVisible(), 'the prompt for the key stays');
  });

  step('a wrong key is refused and the page says so', async () => {
    await page.getByTestId('key-prompt-input').fill('not-the-key');
    await page.getByTestId('key-prompt-save').click();
    await page.waitForFunction(() => /did not accept/.test(document.getElementById('key-prompt-text').textContent),
      null, { timeout: UI_WAIT_MS });
    assert.equal(await page.locator('#model').getAttribute('data-status'), 'locked');
  });

  step('the right key unlocks the model and chats with it', async () => {
    await page.getByTestId('key-prompt-input').fill(KEY);
    await page.getByTestId('key-prompt-save').click();
    await page.waitForSelector('#model[data-status="ready"]', { timeout: UI_WAIT_MS });
    assert.ok(await page.getByTestId('key-prompt').isHidden(), 'the prompt goes away');
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('wgserve.apikey.v1'))), KEY,
      'the key is kept in localStorage');
    assert.equal(await page.getByTestId('api-key').inputValue(), KEY, 'and shown in Settings');

    const box = page.getByTestId('max-tokens');
    await box.fill('4');
    await box.press('Tab');
    const before = await page.locator(sel.messages).count();
    await ask('What is the capital of France?');
    await waitIdleWith(before + 2);
    assert.equal(chatAuth.at(-1), `Bearer ${KEY}`, 'the request carries the key as a Bearer token');
    const answer = page.locator(sel.lastAssistant).last();
    assert.equal(await answer.getAttribute('data-state'), 'done');
    assert.ok((await answer.getByTestId('message-content').textContent()).trim().length > 0, 'an answer came');
    await page.screenshot({ path: join(SHOTS, 'keys-answer.png'), fullPage: true });
  });

  step('after a reload the key is remembered', async () => {
    await page.reload();
    await page.waitForSelector('#model[data-status="ready"]', { timeout: UI_WAIT_MS });
    assert.ok(await page.getByTestId('key-prompt').isHidden());
  });

  step('the page raised no script errors', async () => {
    assert.deepEqual(pageErrors, []);
  });
});
