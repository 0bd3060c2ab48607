// The runs web UI at `/` and `/runs/:id`: one self-contained HTML document (inline CSS and JS,
// no external assets) whose script routes on the path and reads the runs API (page-script.ts).
import { contentSecurityPolicy } from '../../../../shared/web/page-kit.js'
import { PAGE_SCRIPT } from './page-script.js'

const STYLE = `
:root { color-scheme: light dark; --fg: #1d232a; --muted: #66707a; --line: #d9dee3; --bg: #fff; --head: #f4f6f8; --box: #fafbfc; --accent: #2f6fdf; --warn: #b25e00; --bad: #c62828; --good: #2e7d32; --log-bg: #0f1419; --log-fg: #d7dde3; }
@media (prefers-color-scheme: dark) { :root { --fg: #e3e7eb; --muted: #98a2ad; --line: #333b44; --bg: #15191e; --head: #1d232a; --box: #1a1f25; --accent: #6a9cf0; --good: #5cb85f; --bad: #ef5350; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 1em; padding: .8em 1.5em; border-bottom: 1px solid var(--line); background: var(--head); }
header h1 { margin: 0; font-size: 1.2em; }
header h1 a { color: inherit; text-decoration: none; }
#note { color: var(--muted); font-size: .9em; }
#note.error { color: var(--bad); font-weight: 600; }
#auth { margin-left: auto; }
#auth[hidden] { display: none; }
main { padding: 1em 1.5em 3em; }
a { color: var(--accent); }
h2 { font-size: 1.05em; margin: 1.4em 0 .6em; }
.crumbs { margin: 0 0 .8em; color: var(--muted); }
.summary { display: flex; flex-wrap: wrap; align-items: center; gap: .4em 2em; }
.label { color: var(--muted); margin-right: .3em; }
.muted, .empty { color: var(--muted); }
.actions { margin-left: auto; display: flex; gap: .5em; }
.actions button { font: inherit; padding: .2em .9em; border: 1px solid var(--line); border-radius: .3em; background: var(--box); color: var(--fg); cursor: pointer; }
.actions button:hover { border-color: var(--accent); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35em .8em .35em 0; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: .85em; text-transform: uppercase; letter-spacing: .03em; }
code, pre, .log-body { font: .92em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.pill { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .85em; border: 1px solid currentColor; color: var(--muted); }
.pill.state-running, .pill.state-starting { color: var(--accent); }
.pill.state-succeeded { color: var(--good); }
.pill.state-failed, .pill.state-timedOut, .pill.state-error { color: var(--bad); }
.pill.state-waiting, .pill.state-pending { color: var(--warn); }
.run-error { color: var(--bad); background: var(--box); border: 1px solid var(--line); border-left: 4px solid var(--bad); padding: .6em .8em; white-space: pre-wrap; overflow-x: auto; }
.graph { position: relative; display: flex; gap: 3.5em; align-items: flex-start; overflow-x: auto; padding: .3em .2em 1em; }
.edges { position: absolute; left: 0; top: 0; pointer-events: none; overflow: visible; }
.edges path { fill: none; stroke: var(--muted); stroke-width: 1.5; opacity: .7; }
.column { display: flex; flex-direction: column; gap: .8em; position: relative; }
.job { position: relative; display: flex; flex-direction: column; gap: .2em; width: 15em; text-align: left; font: inherit; color: inherit; cursor: pointer;
  padding: .5em .7em; border: 1px solid var(--line); border-left: 5px solid var(--muted); border-radius: .35em; background: var(--box); }
.job:hover { border-color: var(--accent); }
.job.selected { outline: 2px solid var(--accent); outline-offset: 1px; }
.job.state-running, .job.state-starting { border-left-color: var(--accent); }
.job.state-succeeded { border-left-color: var(--good); }
.job.state-failed, .job.state-timedOut { border-left-color: var(--bad); }
.job.state-waiting { border-left-color: var(--warn); }
.job.state-skipped, .job.state-cancelled { border-left-style: dashed; opacity: .75; }
.job-name { font-weight: 600; overflow-wrap: anywhere; }
.job-desc, .job-needs { font-size: .85em; color: var(--muted); overflow-wrap: anywhere; }
#log { margin-top: 1.5em; border: 1px solid var(--line); border-radius: .35em; overflow: hidden; }
.log-head { padding: .45em .8em; background: var(--head); border-bottom: 1px solid var(--line); }
.log-body { margin: 0; padding: .6em .9em; background: var(--log-bg); color: var(--log-fg); max-height: 65vh; min-height: 6em; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.log-body .line { min-height: 1.2em; }
.log-body .partial { display: block; }
.log-body .stderr { color: #f0b37e; }
.log-body .failed { color: #ff8a80; font-weight: 600; }
.log-body .step { margin: .9em 0 .3em; padding-top: .4em; font-size: 1em; color: #8fb8ff; border-top: 1px solid #2a323b; }
.log-body .step:first-child { margin-top: 0; padding-top: 0; border-top: 0; }
`

/**
 * The page's policy, in a <meta> element because the page is served as a plain string: the
 * script and the style are allowed by their hashes, so anything that slipped past escaping
 * still could not run; it may talk only to this origin (the API and the log streams).
 */
const CSP = contentSecurityPolicy(PAGE_SCRIPT, STYLE)

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Regatta CI</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1><a data-nav href="/">Regatta CI</a></h1><span id="note">loading</span>
<form id="auth" hidden><input type="password" id="token" placeholder="API token" autocomplete="off" aria-label="API token"> <button>Use token</button></form></header>
<main>
<div id="view"></div>
<section id="log" hidden aria-live="polite"></section>
</main>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`

/** The runs UI; the same document for every route (the script reads the path). */
export function runsPage(): string {
  return PAGE
}
