// wgserve chat page: conversation state, persistence, rendering, and the
// streaming client for the server's OpenAI-compatible API.
//
// Layout of this file: storage, state, small DOM helpers, settings,
// history sidebar, message rendering, the request/stream loop, boot.
// Model output only ever reaches the page through renderMarkdown (which
// builds DOM nodes) or textContent: nothing here uses innerHTML.

import { renderMarkdown } from './markdown.js';
import { sseData } from './sse.js';

// API paths are relative so the page also works behind a proxy that mounts
// wgserve under a sub-path; served at "/" they resolve to "/v1/...".
const API = { models: 'v1/models', chat: 'v1/chat/completions' };

const KEYS = {
  settings: 'wgserve.settings.v1',
  conversations: 'wgserve.conversations.v1',
  current: 'wgserve.current.v1',
  // The server's API key, when it has one: kept in this browser only and
  // sent as `Authorization: Bearer` (never in a URL).
  apiKey: 'wgserve.apikey.v1',
};
const DEFAULTS = Object.freeze({ system: '', temperature: 0.7, top_p: 0.95, max_tokens: 512 });
const LIMITS = { temperature: [0, 2], top_p: [0.05, 1], max_tokens: [1, 1048576] };
const ROLE_LABEL = { user: 'You', assistant: 'Assistant', error: 'Error' };
const MODEL_RETRY_MS = 5000;
const SAVE_EVERY_MS = 2000; // how often a streaming answer is checkpointed

// ---------------------------------------------------------------- storage

const store = {
  get(key, fallback) {
    try {
      const raw = localStorage.getItem(key);
      return raw == null ? fallback : JSON.parse(raw);
    } catch {
      return fallback; // storage disabled or corrupt JSON: start fresh
    }
  },
  /** Returns 'ok', 'quota' (storage full) or 'fail' (storage unavailable). */
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
      return 'ok';
    } catch (e) {
      const quota = e && (e.name === 'QuotaExceededError' || e.code === 22 || e.code === 1014);
      return quota ? 'quota' : 'fail';
    }
  },
};

function clamp(v, [lo, hi], fallback) {
  const n = v === null || v === '' ? NaN : Number(v); // Number(null) would be 0
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

function loadSettings() {
  const s = store.get(KEYS.settings, {}) || {};
  return {
    system: typeof s.system === 'string' ? s.system : DEFAULTS.system,
    temperature: clamp(s.temperature, LIMITS.temperature, DEFAULTS.temperature),
    top_p: clamp(s.top_p, LIMITS.top_p, DEFAULTS.top_p),
    max_tokens: Math.round(clamp(s.max_tokens, LIMITS.max_tokens, DEFAULTS.max_tokens)),
  };
}

function loadConversations() {
  const raw = store.get(KEYS.conversations, []);
  if (!Array.isArray(raw)) return [];
  return raw.filter((c) => c && typeof c.id === 'string' && Array.isArray(c.messages)).map((c) => {
    c.title = typeof c.title === 'string' && c.title ? c.title : 'Untitled';
    c.messages = c.messages.filter((m) => m && ROLE_LABEL[m.role] && typeof m.content === 'string');
    for (const m of c.messages) {
      // The page was closed while this answer streamed: keep it as stopped.
      if (m.pending) { delete m.pending; m.finish = 'stopped'; }
    }
    c.updated = Number(c.updated) || 0;
    return c;
  });
}

// ---------------------------------------------------------------- state

const state = {
  settings: DEFAULTS,
  convs: [],        // saved conversations (only ones with messages)
  current: null,    // the conversation on screen; may be a fresh, unsaved one
  model: null,      // model id from /v1/models
  gen: null,        // the in-flight generation, see send()
  renaming: false,  // a history title is being edited: defer list re-renders
  historyStale: false,
  modelTimer: 0,
  apiKey: '',       // see KEYS.apiKey
};
let ui = {};

function newId() {
  // crypto.randomUUID needs a secure origin; the page may be served over plain http.
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
}

function newConversation() {
  const now = Date.now();
  return { id: newId(), title: 'New chat', renamed: false, created: now, updated: now, messages: [] };
}

function titleFrom(text) {
  const t = text.trim().replace(/\s+/g, ' ');
  return t.length > 60 ? `${t.slice(0, 57)}…` : t || 'Untitled';
}

function saveConversations() {
  const keep = () => state.convs.filter((c) => c.messages.length);
  let result = store.set(KEYS.conversations, keep());
  // Storage full: drop the least recently used conversations (never the one
  // on screen) until the rest fit, and say so.
  let dropped = 0;
  while (result === 'quota') {
    const victims = keep().filter((c) => c !== state.current).sort((a, b) => a.updated - b.updated);
    if (!victims.length) break;
    state.convs = state.convs.filter((c) => c !== victims[0]);
    dropped++;
    result = store.set(KEYS.conversations, keep());
  }
  if (dropped) announce(`Browser storage is full: removed ${dropped} old conversation(s).`, true);
  store.set(KEYS.current, state.current ? state.current.id : null);
}

function saveSettings() {
  store.set(KEYS.settings, state.settings);
}

function loadApiKey() {
  const k = store.get(KEYS.apiKey, '');
  return typeof k === 'string' ? k.trim() : '';
}

/** Headers every API call carries: the key, when one is set. */
function authHeaders(extra = {}) {
  return state.apiKey ? { ...extra, Authorization: `Bearer ${state.apiKey}` } : extra;
}

/** Stores a new key (empty clears it), updates both key fields, re-checks the server. */
function setApiKey(key) {
  state.apiKey = key.trim();
  if (state.apiKey) store.set(KEYS.apiKey, state.apiKey);
  else { try { localStorage.removeItem(KEYS.apiKey); } catch { /* storage off */ } }
  ui.apiKey.value = state.apiKey;
  ui.keyPromptInput.value = '';
  loadModel();
}

/**
 * The server refused the key (401): say so where the conversation is, with a
 * field to enter the key, instead of failing every message. `why` is the
 * server's own words.
 */
function askForKey(why) {
  ui.keyPromptText.textContent = state.apiKey
    ? `The server did not accept the saved API key: ${why} Enter the right key.`
    : `This server needs an API key: ${why} Enter it to chat.`;
  ui.keyPrompt.hidden = false;
  ui.keyPromptInput.focus();
}

// ---------------------------------------------------------------- DOM helpers

/** Creates an element; string children become text nodes, never markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.filter((c) => c != null));
  return el;
}

/** Screen-reader announcement; `visible` also shows it as a toast. */
function announce(text, visible = false) {
  ui.srStatus.textContent = '';
  // A fresh task makes assistive tech notice the change even for equal text.
  setTimeout(() => { ui.srStatus.textContent = text; }, 30);
  if (visible) {
    ui.toast.textContent = text;
    ui.toast.hidden = false;
    clearTimeout(ui.toast._t);
    ui.toast._t = setTimeout(() => { ui.toast.hidden = true; }, 5000);
  }
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function autosize() {
  const t = ui.input;
  t.style.height = 'auto';
  t.style.height = `${t.scrollHeight + 2}px`; // CSS max-height caps it
}

// ---------------------------------------------------------------- settings

function initSettings() {
  const s = state.settings;
  const slider = (input, out, key) => {
    const show = () => { out.value = Number(input.value).toFixed(2); };
    input.value = String(s[key]);
    show();
    input.addEventListener('input', () => {
      s[key] = clamp(input.value, LIMITS[key], DEFAULTS[key]);
      show();
      saveSettings();
    });
    return show;
  };
  const showTemp = slider(ui.temperature, ui.temperatureOut, 'temperature');
  const showTopP = slider(ui.topP, ui.topPOut, 'top_p');

  ui.system.value = s.system;
  ui.system.addEventListener('input', () => { s.system = ui.system.value; saveSettings(); });

  ui.maxTokens.value = String(s.max_tokens);
  ui.maxTokens.addEventListener('input', () => {
    const n = Number(ui.maxTokens.value);
    if (Number.isInteger(n) && n >= LIMITS.max_tokens[0] && n <= LIMITS.max_tokens[1]) {
      s.max_tokens = n;
      saveSettings();
    }
  });
  // On leaving the field, show the value that will actually be used.
  ui.maxTokens.addEventListener('change', () => { ui.maxTokens.value = String(s.max_tokens); });

  ui.resetSettings.addEventListener('click', () => {
    Object.assign(s, DEFAULTS);
    ui.system.value = s.system;
    ui.temperature.value = String(s.temperature);
    ui.topP.value = String(s.top_p);
    ui.maxTokens.value = String(s.max_tokens);
    showTemp();
    showTopP();
    saveSettings();
    announce('Settings reset to defaults.');
  });
}

// ---------------------------------------------------------------- history sidebar

function sortedConversations() {
  return state.convs.filter((c) => c.messages.length).sort((a, b) => b.updated - a.updated);
}

function renderHistory() {
  // Re-rendering would destroy the title being edited; startRename's finish catches up.
  if (state.renaming) { state.historyStale = true; return; }
  const list = sortedConversations();
  ui.historyList.replaceChildren(...list.map(historyItem));
  ui.historyEmpty.hidden = list.length > 0;
}

function historyItem(c) {
  const active = c === state.current;
  return h('li', { class: active ? 'history-item active' : 'history-item', 'data-testid': 'history-item', 'data-id': c.id },
    h('button', {
      type: 'button', class: 'history-open', title: c.title, 'aria-current': active ? 'true' : null,
      onclick: () => switchTo(c),
    }, c.title),
    h('button', {
      type: 'button', class: 'icon-btn', 'data-testid': 'history-rename', title: 'Rename',
      'aria-label': `Rename conversation: ${c.title}`, onclick: (e) => startRename(e.currentTarget.parentElement, c),
    }, '✎'),
    h('button', {
      type: 'button', class: 'icon-btn danger', 'data-testid': 'history-delete', title: 'Delete',
      'aria-label': `Delete conversation: ${c.title}`, onclick: () => deleteConversation(c),
    }, '✕'));
}

function focusHistoryButton(c, testid) {
  const li = [...ui.historyList.children].find((el) => el.dataset.id === c.id);
  li?.querySelector(`[data-testid="${testid}"]`)?.focus();
}

function startRename(li, c) {
  const input = h('input', {
    type: 'text', class: 'history-title-input', 'data-testid': 'history-title-input',
    'aria-label': 'Conversation title (Enter to save, Escape to cancel)', maxlength: 200,
  });
  input.value = c.title;
  let done = false;
  const finish = (commit) => {
    if (done) return;
    done = true;
    const title = input.value.trim().replace(/\s+/g, ' ');
    if (commit && title && title !== c.title) {
      c.title = title;
      c.renamed = true;
      saveConversations();
    }
    state.renaming = false;
    // Replace only this entry, so a click that caused the blur still lands on its target.
    if (state.historyStale) { state.historyStale = false; renderHistory(); } else li.replaceWith(historyItem(c));
    renderTitle();
    focusHistoryButton(c, 'history-rename');
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); finish(true); }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finish(false); }
  });
  input.addEventListener('blur', () => finish(true));
  state.renaming = true;
  li.querySelector('.history-open').replaceWith(input);
  input.focus();
  input.select();
}

/** An in-page confirmation (a modal <dialog>), with window.confirm as fallback. */
function confirmDialog(text, okLabel) {
  const d = ui.confirm;
  if (typeof d.showModal !== 'function') return Promise.resolve(window.confirm(text));
  ui.confirmText.textContent = text;
  ui.confirmOk.textContent = okLabel;
  d.returnValue = '';
  d.showModal();
  ui.confirmCancel.focus(); // the safe choice is the default
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
  });
}

async function deleteConversation(c) {
  if (!(await confirmDialog(`Delete “${c.title}”? This cannot be undone.`, 'Delete'))) {
    focusHistoryButton(c, 'history-delete');
    return;
  }
  if (state.gen && state.gen.conv === c) stop();
  state.convs = state.convs.filter((x) => x !== c);
  if (c === state.current) state.current = sortedConversations()[0] || newConversation();
  saveConversations();
  renderHistory();
  renderConversation();
  announce('Conversation deleted.');
  ui.newChat.focus();
}

function switchTo(c) {
  if (c !== state.current) {
    if (state.gen) stop();
    state.current = c;
    saveConversations();
    renderHistory();
    renderConversation();
  }
  setSidebar(false);
  ui.input.focus();
}

function newChat() {
  if (state.gen) stop();
  if (state.current.messages.length) {
    state.current = newConversation();
    saveConversations();
    renderHistory();
    renderConversation();
  }
  setSidebar(false);
  ui.input.focus();
}

function setSidebar(open) {
  const wasOpen = document.body.classList.contains('sidebar-open');
  document.body.classList.toggle('sidebar-open', open);
  ui.menu.setAttribute('aria-expanded', String(open));
  ui.menu.setAttribute('aria-label', open ? 'Hide conversations and settings' : 'Show conversations and settings');
  ui.backdrop.hidden = !open;
  if (open && !wasOpen) ui.newChat.focus();
}

// ---------------------------------------------------------------- messages

function renderTitle() {
  const t = state.current.messages.length ? state.current.title : 'New chat';
  ui.convTitle.textContent = t;
  document.title = `${t} · wgserve`;
}

function renderConversation() {
  const msgs = state.current.messages;
  ui.messages.replaceChildren(...msgs.map(messageEl));
  if (!msgs.length) {
    ui.messages.append(h('div', { class: 'empty-state' },
      h('p', {}, 'Ask anything.'),
      h('p', { class: 'hint' }, 'Enter sends, Shift+Enter starts a new line, Escape stops an answer.')));
  }
  renderTitle();
  scrollToBottom();
}

function messageEl(m) {
  const el = h('div', {
    class: `msg msg-${m.role}${m.excluded ? ' excluded' : ''}${m.pending ? ' streaming' : ''}`,
    'data-testid': 'message', 'data-role': m.role, 'data-finish': m.finish || null,
    'data-state': m.pending ? 'streaming' : 'done', 'data-status': m.status || null,
    title: m.excluded && m.role === 'user' ? 'Got no answer: not sent again as context' : null,
  }, h('div', { class: 'msg-role' }, ROLE_LABEL[m.role]));
  const content = h('div', { class: 'msg-content', 'data-testid': 'message-content' });
  if (m.role === 'assistant') content.append(renderMarkdown(m.content));
  else content.textContent = m.content; // user text is shown as typed
  el.append(content);
  // A reasoning model's thoughts: collapsed, under the answer.
  if (m.role === 'assistant' && m.reasoning) el.append(reasoningEl(m).details);
  if (m.role === 'assistant' && !m.pending) {
    if (m.finish === 'stopped' && !m.content) content.append(h('p', { class: 'muted' }, 'Stopped before any text arrived.'));
    if (m.finish === 'error') el.append(h('div', { class: 'stats' }, 'Incomplete: the answer was cut off by an error.'));
    if (m.stats) el.append(statsEl(m));
  }
  return el;
}

function reasoningEl(m) {
  const body = h('div', { class: 'reasoning-body' }, renderMarkdown(m.reasoning || ''));
  const details = h('details', { class: 'reasoning', 'data-testid': 'reasoning' }, h('summary', {}, 'Reasoning'), body);
  return { details, body };
}

function statsEl(m) {
  const s = m.stats;
  const parts = [`${s.tokens} token${s.tokens === 1 ? '' : 's'}`];
  parts.push(s.tps != null ? `${s.tps.toFixed(1)} tok/s` : '– tok/s');
  parts.push(s.ttft_ms != null ? `TTFT ${Math.round(s.ttft_ms)} ms` : 'TTFT –');
  if (s.cached_tokens) parts.push(`${s.cached_tokens} prompt tokens cached`);
  if (m.finish === 'length') parts.push('stopped at max tokens');
  if (m.finish === 'stopped') parts.push('stopped');
  return h('div', {
    class: 'stats', 'data-testid': 'stats', 'data-tokens': s.tokens,
    'data-tps': s.tps != null ? s.tps.toFixed(2) : '', 'data-ttft-ms': s.ttft_ms != null ? Math.round(s.ttft_ms) : '',
  }, parts.join(' · '));
}

// ---------------------------------------------------------------- talking to the server

class ChatError extends Error {
  constructor(kind, message, status = 0, retryAfter = null) {
    super(message);
    this.kind = kind; // 'network' | 'http' | 'stream' | 'protocol' | 'closed'
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Pulls the message out of an OpenAI-style error body, or any text body. */
function errorMessage(body, fallback) {
  try {
    const j = JSON.parse(body);
    const e = j && j.error;
    if (e && typeof e.message === 'string') return e.message;
    if (typeof e === 'string') return e;
    if (j && typeof j.message === 'string') return j.message;
  } catch { /* not JSON: use the text itself */ }
  return body.trim().slice(0, 500) || fallback;
}

function describeError(err) {
  const msg = /[.!?]$/.test(err.message) ? err.message : `${err.message}.`;
  switch (err.kind) {
    case 'network': return `Could not reach the server. Is wgserve running? (${err.message})`;
    case 'stream': return `The server reported an error while answering: ${msg}`;
    case 'closed':
    case 'protocol': return msg;
    default: break;
  }
  if (err.status === 400) return `The server rejected the request (400): ${msg}`;
  if (err.status === 401) return `The server needs a valid API key (401): ${msg} Enter it above or under Settings.`;
  if (err.status === 429) {
    const ra = err.retryAfter;
    const when = ra ? (/^\d+$/.test(ra) ? ` Try again in ${ra} s.` : ` Try again after ${ra}.`) : ' Try again shortly.';
    return `The server is busy (429): ${msg}${when}`;
  }
  if (err.status === 503) return `The server is not ready yet (503): ${msg}`;
  return `The server answered with an error (${err.status}): ${msg}`;
}

/** What the model sees: system prompt, then every turn that got an answer. */
function apiMessages(conv, pending) {
  const out = [];
  if (state.settings.system.trim()) out.push({ role: 'system', content: state.settings.system });
  for (const m of conv.messages) {
    if (m === pending || m.role === 'error' || m.excluded || !m.content) continue;
    const last = out[out.length - 1];
    // Chat templates often insist that roles alternate: merge a repeat.
    if (last && last.role === m.role && m.role === 'user') last.content += `\n\n${m.content}`;
    else out.push({ role: m.role, content: m.content });
  }
  return out;
}

async function loadModel() {
  clearTimeout(state.modelTimer);
  let status;
  let label;
  try {
    const res = await fetch(API.models, { headers: authHeaders({ Accept: 'application/json' }) });
    if (res.status === 401) {
      // No polling: nothing changes until a key is entered.
      const text = await res.text().catch(() => '');
      [status, label] = ['locked', 'API key needed'];
      askForKey(errorMessage(text, 'a key is required.'));
    } else if (res.ok) {
      ui.keyPrompt.hidden = true;
      const j = await res.json();
      const id = j && Array.isArray(j.data) && j.data[0] && j.data[0].id;
      if (typeof id === 'string' && id) {
        state.model = id;
        [status, label] = ['ready', id];
      } else {
        [status, label] = ['error', 'no model listed'];
      }
    } else if (res.status === 503) {
      [status, label] = ['loading', 'model loading…'];
    } else {
      [status, label] = ['error', `unavailable (${res.status})`];
    }
  } catch {
    [status, label] = ['offline', 'server unreachable'];
  }
  if (status !== 'ready' && state.model) label = `${state.model} (${label})`;
  ui.modelName.textContent = label;
  ui.modelName.title = label;
  ui.model.dataset.status = status;
  if (status !== 'ready' && status !== 'locked') state.modelTimer = setTimeout(loadModel, MODEL_RETRY_MS);
}

/** Streams one answer into gen.msg; throws ChatError (or AbortError on stop). */
async function streamChat(gen, messages) {
  const s = state.settings;
  if (!state.model) await loadModel();
  const body = {
    messages, stream: true, stream_options: { include_usage: true },
    temperature: s.temperature, top_p: s.top_p, max_tokens: s.max_tokens,
  };
  if (state.model) body.model = state.model;

  gen.t0 = performance.now();
  let res;
  try {
    res = await fetch(API.chat, {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(body),
      signal: gen.ctrl.signal,
    });
  } catch (e) {
    if (gen.ctrl.signal.aborted) throw e;
    throw new ChatError('network', e.message || String(e));
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    const why = errorMessage(text, res.statusText || 'request failed');
    if (res.status === 401) askForKey(why);
    throw new ChatError('http', why, res.status, res.headers.get('Retry-After'));
  }
  if (!res.body) throw new ChatError('protocol', 'The server sent no response body.');

  const msg = gen.msg;
  let done = false;
  for await (const data of sseData(res.body)) {
    if (data === '[DONE]') { done = true; break; }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      throw new ChatError('protocol', `The server sent a malformed event: ${data.slice(0, 200)}`);
    }
    if (chunk.error) {
      throw new ChatError('stream', errorMessage(JSON.stringify(chunk), 'unknown error'), Number(chunk.error.code) || 0);
    }
    if (chunk.usage) gen.usage = chunk.usage;
    const choice = chunk.choices && chunk.choices[0];
    if (!choice) continue;
    const delta = choice.delta || {};
    // Reasoning models (gpt-oss's analysis channel) may send their thinking
    // apart from the answer, as vLLM does.
    const thought = delta.reasoning_content ?? delta.reasoning;
    const piece = typeof delta.content === 'string' ? delta.content : '';
    if (piece || (typeof thought === 'string' && thought)) {
      const now = performance.now();
      if (gen.tFirst == null) gen.tFirst = now;
      gen.tLast = now;
      gen.pieces++;
      if (piece) msg.content += piece;
      if (typeof thought === 'string') msg.reasoning = (msg.reasoning || '') + thought;
      schedulePaint(gen);
      if (now - gen.savedAt > SAVE_EVERY_MS) { gen.savedAt = now; saveConversations(); }
    }
    if (choice.finish_reason) msg.finish = choice.finish_reason;
  }
  if (!done && !msg.finish) throw new ChatError('closed', 'The connection closed before the answer finished.');
}

// The whole answer's Markdown is re-rendered at most once per animation
// frame, not once per token; and when answers get long enough that a render
// is costly, less often still (spending at most ~1/4 of the time rendering).
function schedulePaint(gen) {
  if (gen.frame || gen.wait) return;
  const delay = Math.max(0, gen.paintCost * 4 - (performance.now() - gen.paintedAt));
  const go = () => { gen.wait = 0; gen.frame = requestAnimationFrame(() => { gen.frame = 0; paint(gen); }); };
  if (delay > 0) gen.wait = setTimeout(go, delay);
  else go();
}

function paint(gen) {
  if (!gen.el.isConnected) return;
  const t = performance.now();
  const stick = nearBottom();
  if (gen.msg.reasoning) {
    if (!gen.reasoningBody) {
      const r = reasoningEl(gen.msg);
      gen.contentEl.after(r.details);
      gen.reasoningBody = r.body;
    }
    gen.reasoningBody.replaceChildren(renderMarkdown(gen.msg.reasoning));
  }
  gen.contentEl.replaceChildren(renderMarkdown(gen.msg.content));
  if (stick) scrollToBottom();
  gen.paintedAt = performance.now();
  gen.paintCost = gen.paintedAt - t;
}

function computeStats(gen) {
  const u = gen.usage;
  const tokens = u && Number.isFinite(u.completion_tokens) ? u.completion_tokens : gen.pieces;
  const ttft = gen.tFirst != null ? gen.tFirst - gen.t0 : null;
  const span = gen.tFirst != null ? (gen.tLast - gen.tFirst) / 1000 : 0;
  // n tokens arrive over n-1 gaps after the first one (whose wait is the TTFT),
  // so this is the decode rate.
  const tps = tokens > 1 && span > 0 ? (tokens - 1) / span : null;
  const cached = u && u.prompt_tokens_details ? u.prompt_tokens_details.cached_tokens : null;
  return { tokens, tps, ttft_ms: ttft, prompt_tokens: u ? u.prompt_tokens : null, cached_tokens: cached || null, exact: !!u };
}

function setGenerating(on) {
  document.body.dataset.state = on ? 'generating' : 'idle';
  const hadFocus = document.activeElement === ui.send || document.activeElement === ui.stop;
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  if (hadFocus) (on ? ui.stop : ui.input).focus();
}

function stop() {
  if (state.gen) state.gen.ctrl.abort();
}

async function send() {
  if (state.gen) return;
  const text = ui.input.value;
  if (!text.trim()) { ui.input.focus(); return; }
  const conv = state.current;
  ui.input.value = '';
  autosize();

  const user = { role: 'user', content: text };
  const msg = { role: 'assistant', content: '', pending: true };
  if (!conv.messages.length && !conv.renamed) conv.title = titleFrom(text);
  conv.messages.push(user, msg);
  conv.updated = Date.now();
  if (!state.convs.includes(conv)) state.convs.push(conv);
  saveConversations();
  renderHistory();

  if (!conv.messages.some((m) => m !== user && m !== msg)) ui.messages.replaceChildren(); // drop the empty state
  renderTitle();
  const userEl = messageEl(user);
  const el = messageEl(msg);
  ui.messages.append(userEl, el);
  scrollToBottom();

  const gen = {
    ctrl: new AbortController(), conv, user, msg, el, userEl,
    contentEl: el.querySelector('[data-testid="message-content"]'),
    reasoningBody: null, frame: 0, wait: 0, paintCost: 0, paintedAt: 0, t0: 0, tFirst: null, tLast: null, pieces: 0, usage: null, savedAt: performance.now(),
  };
  state.gen = gen;
  setGenerating(true);
  announce('Generating an answer…');

  let errorMsg = null;
  try {
    await streamChat(gen, apiMessages(conv, msg));
    msg.stats = computeStats(gen);
    announce('Answer complete.');
  } catch (err) {
    if (gen.ctrl.signal.aborted) {
      msg.finish = 'stopped';
      msg.stats = computeStats(gen);
      if (!msg.content) user.excluded = msg.excluded = true;
      announce('Stopped.');
    } else {
      const e = err instanceof ChatError ? err : new ChatError('protocol', `Unexpected error: ${err && err.message}`);
      // The failed turn is kept on screen but left out of later requests.
      user.excluded = true;
      if (msg.content) { msg.excluded = true; msg.finish = 'error'; } else conv.messages.splice(conv.messages.indexOf(msg), 1);
      errorMsg = { role: 'error', content: describeError(e), status: e.status || e.kind };
      conv.messages.push(errorMsg);
      announce(errorMsg.content);
      if (e.kind === 'network' || e.status === 503 || e.status === 404) loadModel(); // server restarted?
      // Hand the text back for editing and resending, unless the user typed anew.
      if (conv === state.current && !ui.input.value.trim()) {
        ui.input.value = user.content;
        autosize();
        ui.input.select();
      }
    }
  } finally {
    cancelAnimationFrame(gen.frame);
    clearTimeout(gen.wait);
    delete msg.pending;
    conv.updated = Date.now();
    state.gen = null;
    if (gen.el.isConnected) {
      const stick = nearBottom();
      const fresh = [];
      if (conv.messages.includes(msg)) fresh.push(messageEl(msg));
      if (errorMsg) fresh.push(messageEl(errorMsg));
      gen.el.replaceWith(...fresh);
      userEl.replaceWith(messageEl(user));
      // An error must be seen, wherever the view was; and handing a long text
      // back to the input has just shrunk the view, so `stick` misses it.
      if (stick || errorMsg) scrollToBottom();
    } else if (conv === state.current) {
      renderConversation(); // switched away and back while it finished
    }
    setGenerating(false);
    saveConversations();
    renderHistory();
    if (conv === state.current && (document.activeElement === document.body || !document.activeElement)) ui.input.focus();
  }
}

// ---------------------------------------------------------------- boot

function boot() {
  const $ = (id) => document.getElementById(id);
  ui = {
    messages: $('messages'), input: $('input'), composer: $('composer'), send: $('send'), stop: $('stop'),
    newChat: $('new-chat'), system: $('system-prompt'), temperature: $('temperature'),
    temperatureOut: $('temperature-value'), topP: $('top-p'), topPOut: $('top-p-value'),
    maxTokens: $('max-tokens'), resetSettings: $('reset-settings'), model: $('model'), modelName: $('model-name'),
    historyList: $('history-list'), historyEmpty: $('history-empty'), convTitle: $('conv-title'),
    menu: $('menu'), backdrop: $('backdrop'), srStatus: $('sr-status'), toast: $('toast'),
    confirm: $('confirm'), confirmText: $('confirm-text'), confirmOk: $('confirm-ok'), confirmCancel: $('confirm-cancel'),
    apiKey: $('api-key'), keyPrompt: $('key-prompt'), keyPromptText: $('key-prompt-text'), keyPromptInput: $('key-prompt-input'),
  };

  state.settings = loadSettings();
  state.apiKey = loadApiKey();
  ui.apiKey.value = state.apiKey;
  ui.apiKey.addEventListener('change', () => setApiKey(ui.apiKey.value));
  ui.keyPrompt.addEventListener('submit', (e) => {
    e.preventDefault();
    if (ui.keyPromptInput.value.trim()) setApiKey(ui.keyPromptInput.value);
  });
  state.convs = loadConversations();
  const currentId = store.get(KEYS.current, null);
  state.current = state.convs.find((c) => c.id === currentId) || newConversation();

  initSettings();
  ui.composer.addEventListener('submit', (e) => { e.preventDefault(); send(); });
  ui.input.addEventListener('keydown', (e) => {
    // isComposing: Enter that confirms an IME composition (CJK input) must not send.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    } else if (e.key === 'Escape' && state.gen) {
      e.preventDefault();
      stop();
    }
  });
  ui.input.addEventListener('input', autosize);
  ui.stop.addEventListener('click', stop);
  ui.newChat.addEventListener('click', newChat);
  ui.menu.addEventListener('click', () => setSidebar(!document.body.classList.contains('sidebar-open')));
  ui.backdrop.addEventListener('click', () => setSidebar(false));
  ui.confirmOk.addEventListener('click', () => ui.confirm.close('ok'));
  ui.confirmCancel.addEventListener('click', () => ui.confirm.close('cancel'));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.body.classList.contains('sidebar-open') && !ui.confirm.open) {
      setSidebar(false);
      ui.menu.focus();
    }
  });

  renderHistory();
  renderConversation();
  setGenerating(false);
  autosize();
  loadModel();
  ui.input.focus();
}

if (typeof document !== 'undefined' && document.getElementById('messages')) boot();
