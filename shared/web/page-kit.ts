// What the master's cluster page and the CI's runs page share: the browser helpers both
// scripts open with (text escaping, durations), and their Content-Security-Policy, which
// allows the inline script and style only by their hashes and talks only to this origin.
import { createHash } from 'node:crypto'

/**
 * Browser code (plain ES2017, inlined before a page's own script): `esc(v)` escapes any value
 * for HTML text and attributes; `dur(ms)` is a duration as `45s`, `3m 20s`, `2h 5m`, `1d 4h`.
 * Written with String.raw and without backticks or dollar-brace, so nothing is interpolated.
 */
export const BROWSER_HELPERS = String.raw`function esc(v) {
  return String(v === undefined || v === null ? '' : v).replace(/[&<>"']/g, function (c) {
    return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
  });
}
function dur(ms) {
  var s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + 's';
  var m = Math.floor(s / 60);
  if (m < 60) return m + 'm' + (s % 60 ? ' ' + (s % 60) + 's' : '');
  var h = Math.floor(m / 60);
  if (h < 24) return h + 'h' + (m % 60 ? ' ' + (m % 60) + 'm' : '');
  var d = Math.floor(h / 24);
  return d + 'd' + (h % 24 ? ' ' + (h % 24) + 'h' : '');
}
`

/** A page script: strict mode, the shared helpers, then the page's own code. */
export function pageScript(own: string): string {
  return `'use strict';\n${BROWSER_HELPERS}${own}`
}

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`

/**
 * The policy of a page whose only script and style are the given inline texts: anything that
 * slipped past escaping still could not run, and the page may talk only to its own origin.
 * `frame-ancestors` works only as a header (a <meta> policy ignores it).
 */
export function contentSecurityPolicy(script: string, style: string, o: { header?: boolean } = {}): string {
  return [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(style)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    ...(o.header ? ["frame-ancestors 'none'"] : []),
  ].join('; ')
}
