// Server-Sent Events parsing for the chat page.
//
// fetch() gives us the response body as arbitrary byte chunks: a chunk can end
// in the middle of a line, in the middle of a multi-byte UTF-8 character, or
// between the "\r" and "\n" of a CRLF. SseParser buffers text until it has
// whole lines and whole events, following the EventSource rules from the HTML
// standard: "data:" lines accumulate (joined with "\n"), a blank line
// dispatches the event, lines starting with ":" are comments (keep-alives).

export class SseParser {
  constructor() {
    this.buf = '';
    this.data = [];
    this.event = '';
  }

  /** Feeds decoded text; returns the events completed by it: [{event, data}]. */
  push(text) {
    this.buf += text;
    const out = [];
    const re = /\r\n|\r|\n/g;
    let pos = 0;
    let m;
    while ((m = re.exec(this.buf))) {
      // A lone "\r" at the very end may be the first half of a "\r\n" whose
      // "\n" is still in flight: wait for more text before ending the line.
      if (m[0] === '\r' && m.index === this.buf.length - 1) break;
      this.line(this.buf.slice(pos, m.index), out);
      pos = re.lastIndex;
    }
    this.buf = this.buf.slice(pos);
    return out;
  }

  /** Call at end of stream: finishes a last line or event left without its terminator. */
  end() {
    const out = [];
    if (this.buf.endsWith('\r')) this.buf = this.buf.slice(0, -1);
    if (this.buf) this.line(this.buf, out);
    this.buf = '';
    // The standard drops an event that was never terminated by a blank line;
    // we are lenient and deliver it, so a server that closes right after its
    // last "data:" line loses nothing.
    this.line('', out);
    return out;
  }

  line(line, out) {
    if (line === '') {
      if (this.data.length) out.push({ event: this.event || 'message', data: this.data.join('\n') });
      this.data = [];
      this.event = '';
      return;
    }
    if (line[0] === ':') return; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    // "id" and "retry" matter only to EventSource reconnection: ignored.
  }
}

/**
 * Reads an SSE response body and yields each event's data string.
 * Decodes UTF-8 in streaming mode so characters split across reads survive.
 */
export async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const ev of parser.push(decoder.decode(value, { stream: true }))) yield ev.data;
    }
    for (const ev of parser.push(decoder.decode())) yield ev.data;
    for (const ev of parser.end()) yield ev.data;
  } finally {
    // Runs also when the consumer stops early (return/throw in its loop):
    // cancel the body so the connection closes and the server frees the sequence.
    reader.cancel().catch(() => {});
  }
}
