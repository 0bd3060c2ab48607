// The runs UI's browser code, as a string inlined into the page (no external assets: the
// machines have no internet). Plain ES2017 so any browser runs it untranspiled.
//
// A client-side router: `/` lists the runs (polling /api/v1/runs every 2 s); `/runs/:id` shows
// one run: its job graph (columns by depth of `needs`, lines from each need), each job's state
// and status, and the selected job's log followed live over server-sent events (read with
// fetch, which sends the API token as a header; EventSource could send it only in the URL);
// artifacts download from a short-lived link the API signs for the token. The render
// functions are pure (data in, HTML out, every text escaped by `esc`); log text goes into the
// page through textContent only.
// Written with String.raw and without backticks or dollar-brace, so nothing is interpolated;
// esc() and dur() come from the shared page kit.
import { pageScript } from '../../../../shared/web/page-kit.js'

export const PAGE_SCRIPT = pageScript(String.raw`var FINAL_RUN = { succeeded: 1, failed: 1, cancelled: 1, error: 1 };
var STEP = /^::regatta step (\d+) (.*)$/;
var STEP_FAILED = /^::regatta step \d+ failed with exit code \d+$/;
var ATTEMPT = /^::regatta attempt (\d+)$/;
var POLL_MS = 2000;
var TOKEN_KEY = 'regatta-token';

function took(startedAt, finishedAt, now) {
  return startedAt === null || startedAt === undefined ? '-' : dur((finishedAt || now) - startedAt);
}
function ago(at, now) {
  return at ? dur(now - at) + ' ago' : '-';
}
function when(at) {
  return at ? new Date(at).toLocaleString() : '';
}
function shortRef(ref) {
  var pull = /^refs\/pull\/(\d+)\//.exec(ref || '');
  if (pull) return 'PR #' + pull[1];
  return String(ref || '').replace(/^refs\/(heads|tags)\//, '');
}
function pill(state) {
  return '<span class="pill state-' + esc(state) + '">' + esc(state) + '</span>';
}
function runHref(runId) {
  return '/runs/' + encodeURIComponent(runId);
}
function table(headers, rows) {
  return '<table><thead><tr>' + headers.map(function (h) { return '<th>' + esc(h) + '</th>'; }).join('') +
    '</tr></thead><tbody>' + rows.map(function (r) {
      return '<tr>' + r.map(function (c) { return '<td>' + c + '</td>'; }).join('') + '</tr>';
    }).join('') + '</tbody></table>';
}

function renderRuns(runs, now) {
  if (!runs.length) {
    return '<p class="empty">No runs yet. Point a GitHub webhook at <code>/webhooks/github</code>, or start one with ' +
      '<code>regatta trigger --repo CLONE_URL --ref main</code>.</p>';
  }
  return table(['Run', 'Repository', 'Ref', 'Commit', 'Trigger', 'State', 'Jobs', 'Duration', 'Started'], runs.map(function (r) {
    var ok = r.jobs.filter(function (j) { return j.state === 'succeeded'; }).length;
    return [
      '<a data-nav href="' + esc(runHref(r.runId)) + '"><code>' + esc(r.runId) + '</code></a>',
      esc(r.repo),
      '<span title="' + esc(r.ref) + '">' + esc(shortRef(r.ref)) + '</span>',
      '<code title="' + esc(r.sha) + '">' + esc(String(r.sha).slice(0, 7)) + '</code>',
      esc(r.kind),
      pill(r.state),
      esc(ok + '/' + r.jobs.length),
      esc(took(r.startedAt, r.finishedAt, now)),
      '<span title="' + esc(when(r.startedAt || r.createdAt)) + '">' + esc(ago(r.startedAt || r.createdAt, now)) + '</span>',
    ];
  }));
}

// Each job's column: 0 without needs, else one more than its deepest need.
function levels(jobs) {
  var byId = {}, depth = {};
  jobs.forEach(function (j) { byId[j.id] = j; });
  function level(id, seen) {
    if (depth[id] !== undefined) return depth[id];
    var j = byId[id];
    if (!j || seen[id]) return 0;
    seen[id] = 1;
    var d = 0;
    (j.needs || []).forEach(function (n) { if (byId[n]) d = Math.max(d, level(n, seen) + 1); });
    depth[id] = d;
    return d;
  }
  var columns = [];
  jobs.forEach(function (j) {
    var d = level(j.id, {});
    (columns[d] = columns[d] || []).push(j);
  });
  return columns.filter(function (c) { return c && c.length; });
}

function renderGraph(run, selected, now) {
  if (!run.jobs.length) return '<p class="empty">This run has no jobs.</p>';
  return '<div class="graph" id="graph"><svg class="edges" id="edges" aria-hidden="true"></svg>' +
    levels(run.jobs).map(function (column) {
      return '<div class="column">' + column.map(function (j) {
        var needs = j.needs && j.needs.length ? 'needs ' + j.needs.join(', ') : 'no needs';
        return '<button type="button" class="job state-' + esc(j.state) + (j.id === selected ? ' selected' : '') +
          '" data-job="' + esc(j.id) + '" title="' + esc(needs) + '">' +
          '<span class="job-name">' + esc(j.id) + '</span>' +
          '<span class="job-line">' + pill(j.state) + ' <span class="muted">' + esc(took(j.startedAt, j.finishedAt, now)) +
          (j.attempt > 1 ? ', attempt ' + esc(j.attempt) : '') + '</span></span>' +
          '<span class="job-desc">' + esc(j.description) + '</span>' +
          (j.needs && j.needs.length ? '<span class="job-needs">' + esc(needs) + '</span>' : '') +
          '</button>';
      }).join('') + '</div>';
    }).join('') + '</div>';
}

function renderRun(run, selected, now) {
  var html = '<p class="crumbs"><a data-nav href="/">Runs</a> / <code>' + esc(run.runId) + '</code></p>' +
    '<section class="summary">' +
    '<div><span class="label">State</span> ' + pill(run.state) + '</div>' +
    '<div><span class="label">Repository</span> ' + esc(run.repo) + '</div>' +
    '<div><span class="label">Ref</span> <span title="' + esc(run.ref) + '">' + esc(shortRef(run.ref)) + '</span></div>' +
    '<div><span class="label">Commit</span> <code>' + esc(run.sha) + '</code></div>' +
    '<div><span class="label">Trigger</span> ' + esc(run.kind) + (run.actor && run.actor !== run.kind ? ' by ' + esc(run.actor) : '') + '</div>' +
    '<div><span class="label">Started</span> <span title="' + esc(when(run.startedAt || run.createdAt)) + '">' + esc(ago(run.startedAt || run.createdAt, now)) + '</span></div>' +
    '<div><span class="label">Duration</span> ' + esc(took(run.startedAt, run.finishedAt, now)) + '</div>' +
    '<div class="actions">' +
    (FINAL_RUN[run.state] ? '' : '<button type="button" data-action="cancel">Cancel</button>') +
    '<button type="button" data-action="rerun">Rerun</button></div>' +
    '</section>';
  if (run.error) html += '<pre class="run-error">' + esc(run.error) + '</pre>';
  if (run.supersededBy) html += '<p class="muted">Superseded by <a data-nav href="' + esc(runHref(run.supersededBy)) + '"><code>' + esc(run.supersededBy) + '</code></a>.</p>';
  html += '<h2>Jobs</h2>' + renderGraph(run, selected, now);
  var saved = run.jobs.filter(function (j) { return j.artifacts; });
  if (saved.length) {
    html += '<h2>Artifacts</h2><ul class="artifacts">' + saved.map(function (j) {
      return '<li><a download data-artifacts href="' + esc(j.artifacts.url) + '">' + esc(j.id) + '.tar.gz</a> <span class="muted">' + esc(bytes(j.artifacts.size)) + '</span></li>';
    }).join('') + '</ul>';
  }
  return html;
}

function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}

if (typeof document !== 'undefined') (function () {
  var view = document.getElementById('view');
  var logBox = document.getElementById('log');
  var note = document.getElementById('note');
  // what the current route started: stopped when the route changes
  var route = { id: 0, timer: null, source: null, run: null, selected: null, painted: '' };

  var setNote = function (text, bad) {
    note.textContent = text;
    note.className = bad ? 'error' : '';
  };
  // the API token (outside regatta dev reads need one, and writes always): asked for when the
  // service answers 401 or 403, kept for this tab only, sent as a bearer header (never in a URL)
  var authForm = document.getElementById('auth');
  var storedToken = function () {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (err) { return ''; }
  };
  var withAuth = function (headers) {
    var token = storedToken();
    if (token) headers.authorization = 'Bearer ' + token;
    return headers;
  };
  var askToken = function (res) {
    if (res.status === 401 || res.status === 403) authForm.hidden = false;
  };
  authForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var input = document.getElementById('token');
    try { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); } catch (err) { /* private mode: this page only */ }
    input.value = '';
    authForm.hidden = true;
    go();
  });
  var getJson = function (url, init) {
    init = init || {};
    return fetch(url, Object.assign({ cache: 'no-store' }, init, { headers: withAuth({ accept: 'application/json' }) })).then(function (res) {
      askToken(res);
      return res.json().catch(function () { return null; }).then(function (body) {
        if (!res.ok) throw new Error(body && body.error ? body.error.message : 'HTTP ' + res.status);
        return body;
      });
    });
  };
  // a job's log as server-sent events, read from a fetch (EventSource cannot send a header):
  // calls onEvent(name, data) per event; settles when the stream ends; close() stops it
  var eventStream = function (url, onEvent) {
    var ac = new AbortController();
    var done = fetch(url, { cache: 'no-store', headers: withAuth({ accept: 'text/event-stream' }), signal: ac.signal }).then(function (res) {
      askToken(res);
      if (!res.ok || !res.body) {
        return res.json().catch(function () { return null; }).then(function (body) {
          throw new Error(body && body.error ? body.error.message : 'HTTP ' + res.status);
        });
      }
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buffered = '';
      var pump = function () {
        return reader.read().then(function (r) {
          if (r.done) return;
          buffered += decoder.decode(r.value, { stream: true }).replace(/\r\n?/g, '\n');
          var end;
          while ((end = buffered.indexOf('\n\n')) >= 0) {
            var name = 'message', data = [];
            buffered.slice(0, end).split('\n').forEach(function (line) {
              var i = line.indexOf(':');
              var field = i < 0 ? line : line.slice(0, i), value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
              if (field === 'event') name = value;
              else if (field === 'data') data.push(value);
            });
            buffered = buffered.slice(end + 2);
            onEvent(name, data.join('\n'));
          }
          return pump();
        });
      };
      return pump();
    });
    return { done: done, close: function () { ac.abort(); } };
  };
  // repainting only what changed keeps hover, focus and text selection across polls
  var paint = function (html) {
    if (html === route.painted) return false;
    route.painted = html;
    view.innerHTML = html;
    return true;
  };
  var stopRoute = function () {
    route.id++;
    if (route.timer) clearTimeout(route.timer);
    if (route.source) route.source.close();
    route = { id: route.id, timer: null, source: null, run: null, selected: null, painted: '' };
  };
  var later = function (id, fn) {
    if (id === route.id) route.timer = setTimeout(fn, POLL_MS);
  };

  // ---- the runs list ----
  var showRuns = function () {
    var id = route.id;
    document.title = 'Runs - Regatta CI';
    logBox.hidden = true;
    var tick = function () {
      getJson('/api/v1/runs?limit=100').then(function (body) {
        if (id !== route.id) return;
        paint('<h2>Runs</h2>' + renderRuns(body.runs, Date.now()));
        setNote('updated ' + new Date().toLocaleTimeString());
      }).catch(function (err) {
        if (id === route.id) setNote('cannot load the runs: ' + err.message, true);
      }).then(function () { later(id, tick); });
    };
    tick();
  };

  // ---- one run ----
  var drawEdges = function () {
    var graph = document.getElementById('graph');
    var svg = document.getElementById('edges');
    if (!graph || !svg || !route.run) return;
    var origin = graph.getBoundingClientRect();
    var boxes = {};
    Array.prototype.forEach.call(graph.querySelectorAll('.job'), function (b) { boxes[b.getAttribute('data-job')] = b.getBoundingClientRect(); });
    svg.setAttribute('width', String(graph.scrollWidth));
    svg.setAttribute('height', String(graph.scrollHeight));
    var paths = [];
    route.run.jobs.forEach(function (j) {
      var to = boxes[j.id];
      (j.needs || []).forEach(function (n) {
        var from = boxes[n];
        if (!from || !to) return;
        var x1 = from.right - origin.left, y1 = from.top + from.height / 2 - origin.top;
        var x2 = to.left - origin.left, y2 = to.top + to.height / 2 - origin.top;
        var mid = (x1 + x2) / 2;
        paths.push('<path d="M' + x1 + ' ' + y1 + ' C' + mid + ' ' + y1 + ' ' + mid + ' ' + y2 + ' ' + x2 + ' ' + y2 + '"></path>');
      });
    });
    svg.innerHTML = paths.join('');
  };

  var appendLog = function (pre, state, stream, data) {
    // complete lines become elements; a partial line waits for the rest
    state.partial += data;
    var parts = state.partial.split('\n');
    state.partial = parts.pop();
    var stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    var frag = document.createDocumentFragment();
    parts.forEach(function (line) {
      var el, m = STEP.exec(line), a = ATTEMPT.exec(line);
      if (m && !STEP_FAILED.test(line)) {
        el = document.createElement('h3');
        el.className = 'step';
        el.textContent = 'Step ' + m[1] + ': ' + m[2];
      } else if (a) {
        el = document.createElement('h3');
        el.className = 'step attempt';
        el.textContent = 'Attempt ' + a[1];
      } else {
        el = document.createElement('div');
        el.className = 'line' + (stream === 'stderr' ? ' stderr' : '') + (STEP_FAILED.test(line) ? ' failed' : '');
        el.textContent = line;
      }
      frag.appendChild(el);
    });
    pre.insertBefore(frag, state.tail);
    state.tail.textContent = state.partial;
    if (stick) pre.scrollTop = pre.scrollHeight;
  };

  var followLog = function (runId, jobId) {
    if (route.source) route.source.close();
    route.source = null;
    var id = route.id;
    logBox.hidden = false;
    logBox.innerHTML = '<div class="log-head"><b></b> <span class="muted" id="log-state">connecting</span></div><div class="log-body" id="log-body"></div>';
    logBox.querySelector('b').textContent = jobId;
    var body = document.getElementById('log-body');
    var stateEl = document.getElementById('log-state');
    var url = '/api/v1/runs/' + encodeURIComponent(runId) + '/jobs/' + encodeURIComponent(jobId) + '/log';
    var connect = function () {
      if (id !== route.id || route.selected !== jobId) return;
      // the stream starts from the beginning of the log: start from an empty panel
      body.textContent = '';
      var tail = document.createElement('span');
      tail.className = 'line partial';
      var state = { partial: '', tail: tail };
      body.appendChild(tail);
      var closed = false;
      var source = eventStream(url, function (name, data) {
        if (name === 'output') {
          var chunk;
          try { chunk = JSON.parse(data); } catch (err) { return; }
          appendLog(body, state, chunk.stream, String(chunk.data || ''));
        } else if (name === 'end') {
          source.close();
          if (state.partial) { appendLog(body, state, 'stdout', '\n'); }
          stateEl.textContent = 'ended';
          logBox.classList.add('ended');
        }
      });
      var close = source.close;
      source.close = function () { closed = true; close(); };
      route.source = source;
      stateEl.textContent = 'live';
      source.done.then(function () { return 'broke off'; }, function (err) { return err.message; }).then(function (why) {
        // a stream that stops before its end event is read again from the start
        if (closed || stateEl.textContent === 'ended') return;
        stateEl.textContent = 'reconnecting (' + why + ')';
        setTimeout(connect, POLL_MS);
      });
    };
    logBox.classList.remove('ended');
    connect();
  };

  var selectJob = function (jobId) {
    if (!route.run || route.selected === jobId) return;
    route.selected = jobId;
    Array.prototype.forEach.call(document.querySelectorAll('.job'), function (b) {
      b.classList.toggle('selected', b.getAttribute('data-job') === jobId);
    });
    var u = new URL(location.href);
    u.searchParams.set('job', jobId);
    history.replaceState(null, '', u.pathname + u.search);
    followLog(route.run.runId, jobId);
  };

  var showRun = function (runId, wanted) {
    var id = route.id;
    document.title = runId + ' - Regatta CI';
    logBox.hidden = true;
    logBox.textContent = '';
    var tick = function () {
      getJson('/api/v1/runs/' + encodeURIComponent(runId)).then(function (run) {
        if (id !== route.id) return;
        route.run = run;
        if (paint(renderRun(run, route.selected, Date.now()))) drawEdges();
        setNote('updated ' + new Date().toLocaleTimeString());
        if (!route.selected && run.jobs.length) {
          // the job asked for, else the first running one, else the first that failed, else the first
          var pick = run.jobs.filter(function (j) { return j.id === wanted; })[0] ||
            run.jobs.filter(function (j) { return j.state === 'running' || j.state === 'starting'; })[0] ||
            run.jobs.filter(function (j) { return j.state === 'failed' || j.state === 'timedOut'; })[0] || run.jobs[0];
          selectJob(pick.id);
        }
        if (!FINAL_RUN[run.state]) later(id, tick);
      }).catch(function (err) {
        if (id !== route.id) return;
        setNote('cannot load run ' + runId + ': ' + err.message, true);
        later(id, tick);
      });
    };
    tick();
  };

  var go = function () {
    stopRoute();
    var m = /^\/runs\/([^\/]+)\/?$/.exec(location.pathname);
    if (m) showRun(decodeURIComponent(m[1]), new URL(location.href).searchParams.get('job'));
    else showRuns();
  };

  document.addEventListener('click', function (e) {
    var target = e.target;
    var link = target.closest && target.closest('a[data-nav]');
    if (link && !e.metaKey && !e.ctrlKey && !e.shiftKey && !e.altKey && e.button === 0) {
      e.preventDefault();
      history.pushState(null, '', link.getAttribute('href'));
      go();
      return;
    }
    var job = target.closest && target.closest('.job');
    if (job) { selectJob(job.getAttribute('data-job')); return; }
    // a download cannot send the token: ask the API (with it) for a short-lived signed link
    var artifacts = target.closest && target.closest('a[data-artifacts]');
    if (artifacts && e.button === 0) {
      e.preventDefault();
      getJson(artifacts.getAttribute('href') + '/link').then(function (body) {
        location.assign(body.url);
      }).catch(function (err) { setNote('cannot download the artifacts: ' + err.message, true); });
      return;
    }
    var action = target.closest && target.closest('button[data-action]');
    if (action && route.run) {
      var runId = route.run.runId, what = action.getAttribute('data-action');
      action.disabled = true;
      getJson('/api/v1/runs/' + encodeURIComponent(runId) + '/' + what, { method: 'POST' }).then(function (run) {
        if (what === 'rerun') { history.pushState(null, '', runHref(run.runId)); go(); return; }
        var selected = route.selected;
        stopRoute();
        showRun(runId, selected);
      }).catch(function (err) {
        action.disabled = false;
        setNote('cannot ' + what + ': ' + err.message, true);
      });
    }
  });
  window.addEventListener('popstate', go);
  window.addEventListener('resize', drawEdges);
  go();
})();
`)
