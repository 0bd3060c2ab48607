// The cluster web page at `/`: one self-contained HTML document (inline CSS and JS, no
// external assets) that renders the state and refreshes it from /api/v1/state every 2 s.
import type { ClusterState } from '../../../../shared/protocol/index.js'
import { PAGE_SCRIPT } from './page-script.js'
import { contentSecurityPolicy } from '../../../../shared/web/page-kit.js'

const STYLE = `
:root { color-scheme: light dark; --fg: #1d232a; --muted: #66707a; --line: #d9dee3; --bg: #fff; --head: #f4f6f8; --accent: #2f6fdf; --warn: #b25e00; --bad: #c62828; --good: #2e7d32; }
@media (prefers-color-scheme: dark) { :root { --fg: #e3e7eb; --muted: #98a2ad; --line: #333b44; --bg: #15191e; --head: #1d232a; --accent: #6a9cf0; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 1em; padding: .8em 1.5em; border-bottom: 1px solid var(--line); background: var(--head); }
header h1 { margin: 0; font-size: 1.2em; }
#note { color: var(--muted); font-size: .9em; }
#note.error { color: var(--bad); font-weight: 600; }
#auth { margin-left: auto; }
#auth[hidden] { display: none; }
main { padding: 1em 1.5em 3em; }
h2 { font-size: 1.05em; margin: 1.6em 0 .5em; }
.summary { display: flex; flex-wrap: wrap; gap: .4em 2em; }
.label { color: var(--muted); margin-right: .3em; }
.warn { color: var(--warn); font-weight: 600; }
.meters { display: grid; grid-template-columns: repeat(auto-fit, minmax(16em, 1fr)); gap: 1em 2em; margin-top: 1em; }
.meter-head { display: flex; justify-content: space-between; }
progress { width: 100%; height: .8em; accent-color: var(--accent); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3em .7em .3em 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: .85em; text-transform: uppercase; letter-spacing: .03em; }
code { font: .92em ui-monospace, SFMono-Regular, Menlo, monospace; }
.empty { color: var(--muted); }
.pill { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .85em; border: 1px solid var(--line); }
.agent-active, .active-yes, .task-running, .task-finished { color: var(--good); border-color: currentColor; }
.agent-draining, .task-staging, .task-starting, .task-unreachable { color: var(--warn); border-color: currentColor; }
.agent-unreachable, .active-no, .task-failed, .task-error, .task-lost, .task-gone, .task-dropped, .task-killed { color: var(--bad); border-color: currentColor; }
`

/**
 * Headers of the page. The script is allowed by its hash, so anything that slipped past
 * escaping still could not run; it may talk only to this origin.
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy': contentSecurityPolicy(PAGE_SCRIPT, STYLE, { header: true }),
}

/**
 * The page, with the state it opens on embedded as JSON (so it paints without waiting for
 * the first fetch) where reads are open. `state` is absent where reads need a token (the
 * script fetches it with the reader's token) and on a standby that knows no leader: the page
 * then polls until it gets the state.
 */
export function renderPage(state: ClusterState | undefined, note = 'loading'): string {
  const initial = state === undefined ? '' : jsonForScript(state)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Regatta cluster</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>Regatta cluster</h1><span id="note">${escapeHtml(note)}</span>
<form id="auth" hidden><input type="password" id="token" placeholder="API token" autocomplete="off" aria-label="API token"> <button>Use token</button></form></header>
<main id="cluster"></main>
<script type="application/json" id="initial-state">${initial}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`
}

/** JSON that is safe inside a <script> element: no `</script>`, `<!--` or line separators survive. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029')
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}
