// The chat page (web/) end to end in headless Chromium, against a real
// wgserve serving the real default model. Run by scripts/test-e2e, which
// starts the server and passes its address in WGSERVE_URL; the server must
// have a small context window (--max-model-len 1024) so that a pasted long
// text is rejected.
//
// The steps share one page and run in order, as a person would use it: ask,
// watch the answer stream in, stop a long answer, start a new chat, reload
// and reopen the old conversation from the history, paste an over-long
// prompt and see the error, then ask again. After a failed step the rest are
// skipped (they depend on it), and a screenshot of the failure is saved.

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, orderedSteps } from './browser.mjs';

const BASE = new URL(process.env.WGSERVE_URL || 'http://127.0.0.1:8080/').href;
const SHOTS = process.env.E2E_SCREENSHOTS || 'target/e2e-screenshots';
// Software Vulkan decodes a few tokens a second and a CPU-starved machine
// less: waits for the model are generous, waits for the page are not.
const MODEL_WAIT_MS = 150_000;
const UI_WAIT_MS = 10_000;
const STEP_MS = 240_000;

const QUESTION = 'What is the capital of France?';
const STORY = 'Write a long story about a dragon who learns to bake bread.';
const FOLLOW_UP = 'What is the capital of Germany?';
// About 2,000 words: far past the server's context window of 1024 tokens.
const LONG_TEXT = Array.from({ length: 200 }, (_, i) => `Paragraph ${i + 1}: the quick brown fox jumps over the lazy dog.`).join('\n');

let closeBrowser;
let page;
const chatRequests = []; // bodies of POST v1/chat/completions, as sent by the page
const pageErrors = []; // uncaught exceptions in the page
const consoleErrors = [];

const sel = {
  messages: '[data-testid="messages"] [data-testid="message"]',
  assistant: '[data-testid="message"][data-role="assistant"]',
  streamingContent: '[data-testid="message"][data-role="assistant"][data-state="streaming"] [data-testid="message-content"]',
};

/** One ordered step; on failure saves `failed-<n>.png` and skips the rest. */
const step = orderedSteps(STEP_MS, (n) => shot(`failed-${n}`));

async function shot(name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`# screenshot: ${path}`);
}

async function runningCount() {
  const res = await fetch(new URL('metrics', BASE));
  assert.equal(res.status, 200, 'GET /metrics answers 200');
  const m = /^wgserve_requests_running (\d+)$/m.exec(await res.text());
  assert.ok(m, '/metrics has wgserve_requests_running');
  return Number(m[1]);
}

async function waitFor(what, probe, timeoutMs, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last.value;
    if (Date.now() > end) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last seen: ${JSON.stringify(last.value)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const messageCount = () => page.locator(sel.messages).count();

/** Waits until a sent request has ended: the page is idle with `n` messages. */
async function waitIdleWith(n) {
  await page.waitForFunction(
    ([s, want]) => document.body.dataset.state === 'idle' && document.querySelectorAll(s).length === want,
    [sel.messages, n], { timeout: MODEL_WAIT_MS, polling: 100 });
}

/** What the messages on screen say, in order. */
function readMessages() {
  return page.locator(sel.messages).evaluateAll((els) => els.map((el) => ({
    role: el.dataset.role,
    state: el.dataset.state,
    finish: el.dataset.finish || null,
    excluded: el.classList.contains('excluded'),
    text: el.querySelector('[data-testid="message-content"]').textContent,
    stats: el.querySelector('[data-testid="stats"]')?.textContent ?? null,
  })));
}

/** Whether the element is wholly inside the visible part of the conversation. */
function inView(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const v = document.getElementById('messages').getBoundingClientRect();
    return r.height > 0 && r.top >= v.top - 1 && r.bottom <= v.bottom + 1;
  });
}

async function setMaxTokens(n) {
  const box = page.getByTestId('max-tokens');
  await box.fill(String(n));
  await box.press('Tab'); // leaving the field shows the value that will be used
  assert.equal(await box.inputValue(), String(n), 'max tokens field keeps the typed value');
}

const normalize = (s) => s.replace(/\s+/g, ' ').trim();
const STATS_RE = /^\d+ tokens? · \d+\.\d tok\/s · TTFT \d+ ms/;

describe('wgserve chat page in headless Chromium', { timeout: 900_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    ({ page, close: closeBrowser } = await launch('wgserve-e2e-'));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) chatRequests.push(r.postDataJSON());
    });
  });

  after(async () => {
    await closeBrowser?.();
  });

  step('the page loads and shows the served model', async () => {
    const models = await (await fetch(new URL('v1/models', BASE))).json();
    const id = models.data[0].id;
    await page.goto(BASE);
    await page.waitForSelector('#model[data-status="ready"]', { timeout: UI_WAIT_MS });
    assert.equal(await page.getByTestId('model-name').textContent(), id);
    assert.equal(await messageCount(), 0, 'a fresh browser starts with an empty conversation');
    assert.equal(await page.getByTestId('history-item').count(), 0);
  });

  step('temperature and max tokens are set through the controls', async () => {
    const slider = page.getByTestId('temperature');
    await slider.focus();
    await slider.press('Home'); // a range input's keyboard minimum
    assert.equal(await slider.inputValue(), '0');
    assert.equal(await page.locator('#temperature-value').textContent(), '0.00');
    await setMaxTokens(24);
  });

  step('a question is answered, streaming in, with a stats line', async () => {
    // Record every distinct text of the streaming answer as the page paints it.
    await page.evaluate((s) => {
      window.__e2eSnaps = [];
      new MutationObserver(() => {
        const el = document.querySelector(s);
        const t = el ? el.textContent : '';
        const snaps = window.__e2eSnaps;
        if (t && t !== snaps[snaps.length - 1]) snaps.push(t);
      }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
    }, sel.streamingContent);

    const input = page.getByTestId('input');
    await input.click();
    await input.pressSequentially(QUESTION);
    await input.press('Enter');
    assert.equal(await input.inputValue(), '', 'Enter sends and empties the input');
    await page.waitForSelector('body[data-state="generating"]', { timeout: UI_WAIT_MS });
    assert.ok(await page.getByTestId('stop').isVisible(), 'Stop is offered while generating');
    await waitIdleWith(2);

    const body = chatRequests.at(-1);
    assert.equal(body.temperature, 0, 'the request carries the temperature set in the UI');
    assert.equal(body.max_tokens, 24, 'the request carries the max tokens set in the UI');
    assert.equal(body.stream, true);
    assert.deepEqual(body.messages, [{ role: 'user', content: QUESTION }]);

    const [user, answer] = await readMessages();
    assert.equal(user.role, 'user');
    assert.equal(user.text, QUESTION);
    assert.equal(answer.role, 'assistant');
    assert.equal(answer.state, 'done');
    assert.ok(answer.text.trim(), 'the answer has text');
    assert.match(answer.text, /Paris/, 'greedy SmolLM2 knows the capital of France');

    const snaps = await page.evaluate(() => window.__e2eSnaps);
    console.log(`# streamed states: ${JSON.stringify(snaps)}`);
    assert.ok(snaps.length >= 2, `at least two partial answers were shown before the end (saw ${snaps.length})`);
    const final = normalize(answer.text);
    for (let i = 0; i < snaps.length; i++) {
      const s = normalize(snaps[i]);
      assert.ok(s.length > 0);
      if (i > 0) assert.ok(s.length > normalize(snaps[i - 1]).length, `streamed text grows: ${JSON.stringify(snaps.slice(i - 1, i + 1))}`);
      assert.ok(final.startsWith(s), `streamed text ${JSON.stringify(s)} begins the final answer ${JSON.stringify(final)}`);
    }
    assert.ok(normalize(snaps[0]).length < final.length, 'the first shown state is only part of the answer');

    const stats = page.locator(sel.assistant).last().getByTestId('stats');
    assert.match(await stats.textContent(), STATS_RE);
    const tokens = Number(await stats.getAttribute('data-tokens'));
    assert.ok(tokens >= 2 && tokens <= 24, `token count ${tokens} is within max tokens`);
    assert.ok(Number(await stats.getAttribute('data-tps')) > 0, 'tokens/s is positive');
    assert.ok(Number(await stats.getAttribute('data-ttft-ms')) > 0, 'TTFT is positive');
    assert.ok(await inView(stats), 'the finished answer and its stats are in view');
    assert.equal(await page.locator('#conv-title').textContent(), QUESTION, 'the conversation is titled by its question');
    await shot('answer');
  });

  step('Stop ends a long answer and the server frees the sequence', async () => {
    await setMaxTokens(400);
    const input = page.getByTestId('input');
    await input.fill(STORY);
    await input.press('Enter');
    // Wait for the first tokens, then check the server is really generating.
    await page.waitForFunction((s) => document.querySelector(s)?.textContent.trim(), sel.streamingContent,
      { timeout: MODEL_WAIT_MS, polling: 100 });
    assert.equal(chatRequests.at(-1).max_tokens, 400);
    assert.equal(await runningCount(), 1, 'the server is generating the story');

    await page.getByTestId('stop').click();
    await waitIdleWith(4);
    assert.ok(await page.getByTestId('send').isVisible(), 'Send is back after stopping');
    assert.ok(!(await page.getByTestId('stop').isVisible()), 'Stop is hidden after stopping');
    const story = (await readMessages())[3];
    assert.equal(story.state, 'done');
    assert.equal(story.finish, 'stopped', 'the answer is marked stopped');
    assert.ok(story.text.trim(), 'the tokens before the stop are kept');
    assert.match(story.stats, /· stopped$/, 'the stats line says it was stopped');
    const tokens = Number(await page.locator(sel.assistant).last().getByTestId('stats').getAttribute('data-tokens'));
    assert.ok(tokens < 400, `stopped long before max tokens (${tokens})`);

    await waitFor('wgserve_requests_running 0', async () => {
      const n = await runningCount();
      return { ok: n === 0, value: n };
    }, 15_000);
    await shot('stopped');
  });

  let saved; // the conversation as shown before the reload
  step('New chat clears the conversation', async () => {
    saved = await readMessages();
    await page.getByTestId('new-chat').click();
    assert.equal(await messageCount(), 0, 'no messages in a new chat');
    assert.ok(await page.locator('.empty-state').isVisible(), 'the empty state is shown');
    assert.equal(await page.locator('#conv-title').textContent(), 'New chat');
    assert.equal(await page.getByTestId('history-item').count(), 1, 'the old conversation is in the history');
  });

  step('after a reload the old conversation opens from the history', async () => {
    await page.reload();
    await page.waitForSelector('#model[data-status="ready"]', { timeout: UI_WAIT_MS });
    assert.equal(await messageCount(), 0, 'the reloaded page shows the new, empty chat');
    assert.equal(await page.getByTestId('max-tokens').inputValue(), '400', 'settings survive a reload');
    assert.equal(await page.getByTestId('temperature').inputValue(), '0');
    const item = page.getByTestId('history-item').filter({ hasText: QUESTION });
    assert.equal(await item.count(), 1, 'the history lists the conversation by its question');
    await item.getByRole('button', { name: QUESTION, exact: true }).click();
    await page.waitForFunction((s) => document.querySelectorAll(s).length === 4, sel.messages, { timeout: UI_WAIT_MS });
    assert.deepEqual(await readMessages(), saved, 'the reopened conversation shows the same messages');
    assert.equal(await page.locator('#conv-title').textContent(), QUESTION);
    assert.match(await item.getAttribute('class'), /\bactive\b/, 'the open conversation is marked in the history');
    await shot('history');
  });

  step('a prompt over the context window shows a plain error', async () => {
    await page.getByTestId('new-chat').click();
    await setMaxTokens(12);
    const input = page.getByTestId('input');
    await input.fill(LONG_TEXT); // a paste
    await input.press('Enter');
    await waitIdleWith(2);
    const [user, error] = await readMessages();
    assert.equal(user.role, 'user');
    assert.ok(user.excluded, 'the failed question is marked as not sent again');
    assert.equal(error.role, 'error');
    const box = page.locator('[data-testid="message"][data-role="error"]');
    assert.ok(await box.isVisible(), 'the error is shown in the conversation');
    assert.ok(await inView(box), 'the error is scrolled into view, not hidden above a long question');
    assert.match(error.text, /\(400\)/, `the error says the server rejected it: ${error.text}`);
    assert.match(error.text, /context window is 1024 tokens/, `the error gives the server's reason: ${error.text}`);
    assert.equal(await input.inputValue(), LONG_TEXT, 'the rejected text is handed back for editing');
    assert.ok(await page.getByTestId('send').isVisible());
    await shot('error');
  });

  step('after the error the page still answers', async () => {
    const input = page.getByTestId('input');
    await input.fill('');
    await input.pressSequentially(FOLLOW_UP);
    await input.press('Enter');
    await waitIdleWith(4);
    assert.deepEqual(chatRequests.at(-1).messages, [{ role: 'user', content: FOLLOW_UP }],
      'the rejected text is left out of the next request');
    const msgs = await readMessages();
    assert.equal(msgs[2].role, 'user');
    assert.equal(msgs[2].text, FOLLOW_UP);
    assert.equal(msgs[3].role, 'assistant');
    assert.equal(msgs[3].state, 'done');
    assert.match(msgs[3].text, /Berlin/, 'the follow-up is answered');
    assert.match(msgs[3].stats, STATS_RE);
    assert.ok(await inView(page.locator(sel.assistant).last().getByTestId('stats')), 'the new answer is in view');
    assert.equal(await runningCount(), 0);
    await shot('recovered');
  });

  // The page's side of a reasoning model (gpt-oss): the server's stream is
  // replaced by a canned one here, since the default model does not reason;
  // the server's reasoning_content itself is tested in Rust.
  step('a reasoning model\'s thoughts show collapsed under the answer', async () => {
    const chunk = (delta) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] })}\n\n`;
    const body = chunk({ role: 'assistant', content: '' })
      + chunk({ reasoning_content: 'The user asks 2+2.' }) + chunk({ reasoning_content: ' That is 4.' })
      + chunk({ content: 'It is **4**.' })
      + `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
        choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;
    await page.route('**/v1/chat/completions', (route) => route.fulfill({
      status: 200, headers: { 'content-type': 'text/event-stream' }, body }));
    try {
      const before = (await readMessages()).length;
      const input = page.getByTestId('input');
      await input.fill('What is 2+2?');
      await input.press('Enter');
      await waitIdleWith(before + 2);
    } finally {
      await page.unroute('**/v1/chat/completions');
    }
    const last = page.locator(sel.assistant).last();
    assert.equal((await last.getByTestId('message-content').innerText()).trim(), 'It is 4.', 'the answer alone is the content');
    const details = last.getByTestId('reasoning');
    assert.equal(await details.count(), 1, 'one reasoning section');
    assert.equal(await details.evaluate((d) => d.open), false, 'collapsed');
    assert.ok(await details.evaluate((d) => d.previousElementSibling?.dataset.testid === 'message-content'),
      'right under the answer');
    await details.locator('summary').click();
    assert.match(await details.innerText(), /The user asks 2\+2\. That is 4\./, 'opens to the reasoning');
    await shot('reasoning');
  });

  step('the page raised no script errors', async () => {
    assert.deepEqual(pageErrors, [], 'no uncaught exceptions in the page');
    // The rejected request is logged by Chromium itself; anything else (a CSP
    // violation, a failed module load) is a bug.
    const unexpected = consoleErrors.filter((m) => !/status of 400/.test(m));
    assert.deepEqual(unexpected, [], 'no console errors besides the expected 400');
  });
});
