// A small, safe Markdown renderer for model output.
//
// Model text is untrusted: everything here builds DOM nodes and puts text in
// with text nodes, never through innerHTML, so no sequence of characters the
// model produces can become markup. Links are kept only when their URL parses
// as absolute http: or https:.
//
// Supported: paragraphs (single newlines become <br>, which is what chat
// models mean by them), headings, fenced code blocks (with a Copy button),
// ordered/unordered lists with nesting, block quotes, horizontal rules, and
// inline **bold**, *italic*, ~~strike~~, `code`, [links](https://...) and
// bare https:// URLs. It renders incomplete text sensibly too, because it is
// re-run on the whole answer while the answer streams in: an unclosed code
// fence shows as a code block so far, an unclosed ** shows literally.

const LIST_RE = /^( *)([-*+]|\d{1,9}[.)])(?: +(.*)|$)/;
const FENCE_RE = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING_RE = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const HR_RE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE_RE = /^ {0,3}> ?/;
const PUNCT_RE = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;

/** Renders Markdown text into a DocumentFragment. */
export function renderMarkdown(src, doc = document) {
  const lines = String(src).replace(/\r\n?/g, '\n').replace(/\t/g, '    ').split('\n');
  const frag = doc.createDocumentFragment();
  renderBlocks(lines, frag, doc);
  return frag;
}

/** True when a line begins a block that may interrupt a paragraph. */
function startsBlock(line) {
  return FENCE_RE.test(line) || HEADING_RE.test(line) || HR_RE.test(line) ||
    QUOTE_RE.test(line) || LIST_RE.test(line);
}

function renderBlocks(lines, parent, doc) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (line.trim() === '') { i++; continue; }

    if ((m = FENCE_RE.exec(line))) {
      const [, indent, fence, lang] = m;
      const closeRe = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
      const body = [];
      for (i++; i < lines.length && !closeRe.test(lines[i]); i++) {
        body.push(stripIndent(lines[i], indent.length));
      }
      i++; // skip the closing fence (or run past the end while it streams)
      parent.append(codeBlock(body.join('\n'), lang, doc));
      continue;
    }

    if ((m = HEADING_RE.exec(line))) {
      const h = doc.createElement(`h${m[1].length}`);
      renderInline(m[2] || '', h, doc);
      parent.append(h);
      i++;
      continue;
    }

    if (HR_RE.test(line)) {
      parent.append(doc.createElement('hr'));
      i++;
      continue;
    }

    if (QUOTE_RE.test(line)) {
      const inner = [];
      // Lines after a ">" line that are plain text continue the quote ("lazy" lines).
      while (i < lines.length && lines[i].trim() !== '' &&
             (QUOTE_RE.test(lines[i]) || (inner.length && !startsBlock(lines[i])))) {
        inner.push(lines[i].replace(QUOTE_RE, ''));
        i++;
      }
      const bq = doc.createElement('blockquote');
      renderBlocks(inner, bq, doc);
      parent.append(bq);
      continue;
    }

    if (LIST_RE.test(line)) {
      i = renderList(lines, i, parent, doc);
      continue;
    }

    // Paragraph: runs until a blank line or the start of another block.
    const para = [line.trim()];
    for (i++; i < lines.length && lines[i].trim() !== '' && !startsBlock(lines[i]); i++) {
      para.push(lines[i].trim());
    }
    const p = doc.createElement('p');
    renderInline(para.join('\n'), p, doc);
    parent.append(p);
  }
}

function indentOf(line) {
  return line.length - line.trimStart().length;
}

function stripIndent(line, n) {
  return line.slice(Math.min(n, indentOf(line)));
}

/**
 * Renders one list starting at lines[i]; returns the index after it.
 * An item owns the lines indented past its marker (continuations, nested
 * lists, code) plus unindented "lazy" continuation text right after it.
 * A list whose items are separated by blank lines is "loose" (items keep <p>).
 */
function renderList(lines, i, parent, doc) {
  const first = LIST_RE.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = doc.createElement(ordered ? 'ol' : 'ul');
  if (ordered && parseInt(first[2], 10) !== 1) list.start = parseInt(first[2], 10);
  let loose = false;
  const items = [];

  while (i < lines.length) {
    const m = LIST_RE.exec(lines[i]);
    if (!m || m[1].length > indent + 1 || m[1].length < indent || /\d/.test(m[2]) !== ordered) break;
    const contentIndent = m[1].length + m[2].length + 1;
    const body = [m[3] || ''];
    let sawBlank = false;
    for (i++; i < lines.length; i++) {
      const l = lines[i];
      if (l.trim() === '') { sawBlank = true; body.push(''); continue; }
      const ind = indentOf(l);
      if (ind > indent) {
        // Indented past the marker: part of this item (a nested list, more text, code).
        body.push(stripIndent(l, contentIndent));
      } else if (!sawBlank && !startsBlock(l)) {
        body.push(l.trim()); // lazy continuation of the item's text
      } else {
        break;
      }
      sawBlank = false;
    }
    // Trailing blank lines belong between items, not inside this one.
    while (body.length > 1 && body[body.length - 1] === '') body.pop();
    if (sawBlank && i < lines.length && LIST_RE.test(lines[i])) loose = true;
    if (body.slice(1).some((l, k) => l === '' && body[k + 2] !== undefined && !LIST_RE.test(body[k + 2]))) loose = true;
    items.push(body);
  }

  for (const body of items) {
    const li = doc.createElement('li');
    renderBlocks(body, li, doc);
    if (!loose) {
      // Tight list: unwrap paragraphs so items don't get paragraph spacing.
      for (const p of [...li.children]) {
        if (p.tagName === 'P') p.replaceWith(...p.childNodes);
      }
    }
    list.append(li);
  }
  parent.append(list);
  return i;
}

function codeBlock(text, lang, doc) {
  const wrap = doc.createElement('div');
  wrap.className = 'code-block';
  const head = doc.createElement('div');
  head.className = 'code-head';
  const label = doc.createElement('span');
  label.className = 'code-lang';
  label.textContent = lang || 'code';
  const btn = doc.createElement('button');
  btn.type = 'button';
  btn.className = 'copy-btn';
  btn.textContent = 'Copy';
  btn.setAttribute('aria-label', lang ? `Copy ${lang} code` : 'Copy code');
  btn.dataset.testid = 'copy-code';
  btn.addEventListener('click', () => copyText(text, btn));
  head.append(label, btn);
  const pre = doc.createElement('pre');
  const code = doc.createElement('code');
  if (lang) code.dataset.lang = lang;
  code.textContent = text;
  pre.append(code);
  pre.tabIndex = 0; // lets keyboard users scroll wide code sideways
  wrap.append(head, pre);
  return wrap;
}

/** Copies text to the clipboard, with a fallback for non-secure (plain http) origins. */
export async function copyText(text, btn) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // navigator.clipboard exists only on secure origins (https, localhost).
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.className = 'clipboard-helper';
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  if (btn) {
    btn.textContent = ok ? 'Copied' : 'Copy failed';
    clearTimeout(btn._reset);
    btn._reset = setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
  }
  return ok;
}

/** Returns the normalised URL if it is absolute http(s), else null. */
export function safeUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function isSpace(c) { return c === undefined || /\s/.test(c); }
function isWord(c) { return c !== undefined && /[\p{L}\p{N}]/u.test(c); }

const AUTOLINK_RE = /<(https?:\/\/[^\s<>]+)>/iy;
const BARE_URL_RE = /https?:\/\/[^\s<>"'`]+/iy;

/** Renders inline Markdown in `text` as children of `parent`. */
export function renderInline(text, parent, doc = document) {
  // Searches that found no closing delimiter, by delimiter: position they
  // started from. A later opener of the same kind cannot find one either, so
  // text full of unmatched "*" or "`" stays linear instead of quadratic.
  const memo = new Map();
  let buf = '';
  const flush = () => {
    if (buf) parent.append(doc.createTextNode(buf));
    buf = '';
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];

    if (c === '\\' && PUNCT_RE.test(text[i + 1] || '')) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '\n') {
      flush();
      parent.append(doc.createElement('br'));
      i++;
      continue;
    }
    if (c === '`') {
      const n = runLength(text, i);
      const close = findCodeClose(text, i + n, n, memo);
      if (close < 0) { buf += text.slice(i, i + n); i += n; continue; }
      let body = text.slice(i + n, close).replace(/\n/g, ' ');
      if (body.length > 2 && body[0] === ' ' && body[body.length - 1] === ' ' && body.trim()) body = body.slice(1, -1);
      flush();
      const code = doc.createElement('code');
      code.textContent = body;
      parent.append(code);
      i = close + n;
      continue;
    }
    if (c === '*' || c === '_' || c === '~') {
      const n = runLength(text, i);
      const span = emphasis(text, i, n, doc, memo);
      if (span) { flush(); parent.append(span.node); i = span.end; continue; }
      buf += text.slice(i, i + n);
      i += n;
      continue;
    }
    if (c === '[') {
      const link = linkAt(text, i, doc, memo);
      if (link) { flush(); parent.append(link.node); i = link.end; continue; }
    }
    if (c === '<') {
      // <https://example.com> autolink
      AUTOLINK_RE.lastIndex = i;
      const m = AUTOLINK_RE.exec(text);
      const href = m && safeUrl(m[1]);
      if (href) { flush(); parent.append(anchor(href, m[1], doc)); i += m[0].length; continue; }
    }
    if ((c === 'h' || c === 'H') && !isWord(text[i - 1])) {
      BARE_URL_RE.lastIndex = i;
      const m = BARE_URL_RE.exec(text);
      if (m) {
        let url = m[0].replace(/[.,;:!?*_~]+$/, '');
        // Keep a closing parenthesis only when the URL opened one (Wikipedia style).
        if (url.endsWith(')') && !url.includes('(')) url = url.replace(/\)+$/, '');
        const href = safeUrl(url);
        if (href) { flush(); parent.append(anchor(href, url, doc)); i += url.length; continue; }
      }
    }
    buf += c;
    i++;
  }
  flush();
}

function runLength(text, i) {
  let n = 1;
  while (text[i + n] === text[i]) n++;
  return n;
}

/** Finds a closing backtick run of exactly n at or after `from`; -1 if none. */
function findCodeClose(text, from, n, memo) {
  const key = `\`${n}`;
  if (memo.get(key) <= from) return -1;
  for (let j = from; j < text.length; j++) {
    if (text[j] !== '`') continue;
    const r = runLength(text, j);
    if (r === n) return j;
    j += r - 1;
  }
  memo.set(key, from);
  return -1;
}

/**
 * Tries to read emphasis opening at text[i] (a run of n delimiter chars).
 * A simplified version of CommonMark's flanking rules: the opener must be
 * followed by non-space, the closer preceded by non-space, and "_" never
 * works inside a word (snake_case_names stay as they are).
 */
function emphasis(text, i, n, doc, memo) {
  const c = text[i];
  if (c === '~' && n !== 2) return null;
  const len = c === '~' ? 2 : Math.min(n, 3);
  if (n > 3) return null;
  if (isSpace(text[i + n])) return null;
  if (c === '_' && isWord(text[i - 1])) return null;
  const key = c + len;
  if (memo.get(key) <= i) return null;

  for (let j = i + n; j < text.length; j++) {
    const ch = text[j];
    if (ch === '`') { // code spans are opaque: a "*" inside one closes nothing
      const r = runLength(text, j);
      const close = findCodeClose(text, j + r, r, memo);
      j = close < 0 ? j + r - 1 : close + r - 1;
      continue;
    }
    if (ch === '\\') { j++; continue; }
    if (ch !== c) continue;
    const r = runLength(text, j);
    if (r >= len && !isSpace(text[j - 1]) && !(c === '_' && isWord(text[j + r]))) {
      // Take the closer from the end of the run: in "**a *b***" the inner
      // "*b*" gets the first star and the outer "**" the last two.
      const closeAt = j + r - len;
      const inner = text.slice(i + len, closeAt);
      if (!inner) return null;
      const node = wrapFor(c, len, doc);
      renderInline(inner, node.inner, doc);
      return { node: node.outer, end: closeAt + len };
    }
    j += r - 1;
  }
  memo.set(key, i);
  return null;
}

function wrapFor(c, len, doc) {
  if (c === '~') { const d = doc.createElement('del'); return { outer: d, inner: d }; }
  if (len === 3) {
    const s = doc.createElement('strong');
    const e = doc.createElement('em');
    s.append(e);
    return { outer: s, inner: e };
  }
  const el = doc.createElement(len === 2 ? 'strong' : 'em');
  return { outer: el, inner: el };
}

/** Reads [label](url "title") at text[i]. Unsafe URLs render the label as plain text. */
function linkAt(text, i, doc, memo) {
  // Labels and URLs longer than these are not links in practice; the caps
  // keep text with many stray "[" or "(" from costing quadratic time.
  const labelEnd = Math.min(text.length, i + 1000);
  let depth = 0;
  let j = i;
  for (; j < labelEnd; j++) {
    if (text[j] === '\\') { j++; continue; }
    if (text[j] === '[') depth++;
    else if (text[j] === ']' && --depth === 0) break;
  }
  if (j >= labelEnd || text[j + 1] !== '(') return null;
  if (!memo.has('lastParen')) memo.set('lastParen', text.lastIndexOf(')'));
  if (memo.get('lastParen') < j) return null;
  const label = text.slice(i + 1, j);
  const urlEnd = Math.min(text.length, j + 2 + 4096);
  let k = j + 2;
  depth = 1;
  for (; k < urlEnd; k++) {
    if (text[k] === '(') depth++;
    else if (text[k] === ')' && --depth === 0) break;
  }
  if (k >= urlEnd) return null;
  let url = text.slice(j + 2, k).trim();
  if (url.startsWith('<')) url = url.slice(1, url.indexOf('>') > 0 ? url.indexOf('>') : undefined);
  else url = url.split(/\s+/)[0];
  const href = safeUrl(url);
  let node;
  if (href) {
    node = doc.createElement('a');
    setLinkAttrs(node, href);
    renderInline(label, node, doc);
  } else {
    node = doc.createElement('span');
    renderInline(label, node, doc);
  }
  return { node, end: k + 1 };
}

function anchor(href, text, doc) {
  const a = doc.createElement('a');
  setLinkAttrs(a, href);
  a.textContent = text;
  return a;
}

function setLinkAttrs(a, href) {
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
}
