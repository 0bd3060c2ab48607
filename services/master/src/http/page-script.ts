// The cluster page's browser code, as a string inlined into the page (no external assets:
// the machines have no internet). Plain ES2017 so any browser runs it untranspiled.
//
// `renderCluster(state)` is pure (state in, HTML out, every text escaped by `esc`) and is run
// by the unit tests in a vm; the boot part only runs where there is a `document`.
// Written with String.raw and without backticks or dollar-brace, so nothing is interpolated;
// esc() and dur() come from the shared page kit.
import { pageScript } from '../../../../shared/web/page-kit.js'

export const PAGE_SCRIPT = pageScript(String.raw`var TERMINAL = { FINISHED: 1, FAILED: 1, KILLED: 1, LOST: 1, ERROR: 1, DROPPED: 1, GONE: 1 };
var MAX_TASK_ROWS = 500;

function num(n) {
  return String(Math.round((n || 0) * 100) / 100);
}
function mem(mib) {
  mib = mib || 0;
  if (mib >= 1048576) return num(mib / 1048576) + ' TiB';
  if (mib >= 1024) return num(Math.round(mib / 1024 * 10) / 10) + ' GiB';
  return num(mib) + ' MiB';
}
function amount(name, v) {
  return name === 'mem' || name === 'disk' ? mem(v) : num(v);
}
function amounts(a) {
  var out = [];
  Object.keys(a || {}).sort().forEach(function (k) { if (a[k]) out.push(esc(k) + ' ' + esc(amount(k, a[k]))); });
  return out.join(', ') || '-';
}
function pill(kind, value) {
  return '<span class="pill ' + kind + '-' + esc(String(value).toLowerCase()) + '">' + esc(value) + '</span>';
}
function meter(name, used, total) {
  var pct = total > 0 ? Math.min(100, used / total * 100) : 0;
  return '<div class="meter"><div class="meter-head"><b>' + esc(name) + '</b><span>' +
    esc(amount(name, used)) + ' / ' + esc(amount(name, total)) + ' (' + Math.round(pct) + '%)</span></div>' +
    '<progress max="100" value="' + pct.toFixed(1) + '"></progress></div>';
}
function table(headers, rows, empty) {
  if (!rows.length) return '<p class="empty">' + esc(empty) + '</p>';
  return '<table><thead><tr>' + headers.map(function (h) { return '<th>' + esc(h) + '</th>'; }).join('') +
    '</tr></thead><tbody>' + rows.map(function (r) {
      return '<tr>' + r.map(function (c) { return '<td>' + c + '</td>'; }).join('') + '</tr>';
    }).join('') + '</tbody></table>';
}
function usedTotal(name, a) {
  return esc(amount(name, (a.used || {})[name] || 0)) + ' / ' + esc(amount(name, (a.total || {})[name] || 0));
}

function renderCluster(s) {
  var now = s.now;
  var agentsById = {};
  s.agents.forEach(function (a) { agentsById[a.id] = a; });
  var frameworksById = {};
  s.frameworks.forEach(function (f) { frameworksById[f.id] = f; });

  var leader = s.leader
    ? '<b>' + esc(s.leader.id) + '</b> epoch ' + esc(s.leader.epoch) + (s.leader.id === s.masterId ? ' (this master)' : '')
    : '<span class="warn">no leading master</span>';
  var counts = {};
  s.agents.forEach(function (a) { counts[a.state] = (counts[a.state] || 0) + 1; });
  var running = s.tasks.filter(function (t) { return !TERMINAL[t.state]; }).length;

  var html = '<section class="summary">' +
    '<div><span class="label">Leader</span> ' + leader + '</div>' +
    '<div><span class="label">Master</span> ' + esc(s.masterId) + ', up ' + esc(dur(now - s.startedAt)) + '</div>' +
    '<div><span class="label">Agents</span> ' + esc(s.agents.length) +
      Object.keys(counts).sort().map(function (k) { return ' ' + pill('agent', k) + ' ' + esc(counts[k]); }).join('') + '</div>' +
    '<div><span class="label">Frameworks</span> ' + esc(s.frameworks.length) + '</div>' +
    '<div><span class="label">Tasks</span> ' + esc(running) + ' active of ' + esc(s.tasks.length) + '</div>' +
    '<div><span class="label">Offers</span> ' + esc(s.offers.length) + ' outstanding</div>' +
    '</section>';

  html += '<section class="meters">' + ['cpus', 'mem', 'disk'].map(function (r) {
    return meter(r, (s.used || {})[r] || 0, (s.total || {})[r] || 0);
  }).join('') + '</section>';

  html += '<h2>Agents</h2>' + table(
    ['ID', 'Hostname', 'Pool', 'State', 'CPUs', 'Mem', 'Tasks', 'Idle', 'Last heartbeat'],
    s.agents.map(function (a) {
      return [
        '<code>' + esc(a.id) + '</code>', esc(a.hostname), esc(a.pool), pill('agent', a.state),
        usedTotal('cpus', a), usedTotal('mem', a), esc(a.tasks),
        a.tasks > 0 || a.idleSince === undefined ? '-' : esc(dur(now - a.idleSince)),
        esc(dur(now - a.lastHeartbeatAt)) + ' ago',
      ];
    }), 'No agents registered.');

  html += '<h2>Frameworks</h2>' + table(
    ['Name', 'ID', 'Roles', 'Active', 'Tasks', 'Offers', 'Using'],
    s.frameworks.map(function (f) {
      return [
        esc(f.name), '<code>' + esc(f.id) + '</code>', esc(f.roles.join(', ')),
        f.active ? pill('active', 'yes') : pill('active', 'no'), esc(f.tasks), esc(f.offers), amounts(f.used),
      ];
    }), 'No frameworks subscribed.');

  html += '<h2>Pending demand</h2>' + table(
    ['Pool', 'Pending tasks', 'Unmet tasks', 'Requested', 'Unmet'],
    (s.demand || []).map(function (d) {
      return [
        esc(d.pool), esc(d.jobs), d.unmetJobs > 0 ? '<span class="warn">' + esc(d.unmetJobs) + '</span>' : '0',
        amounts(d.requested), d.unmetJobs > 0 ? amounts(d.unmet) : '-',
      ];
    }), 'No pending demand.');

  if (s.roles.length) {
    html += '<h2>Roles</h2>' + table(
      ['Role', 'Weight', 'Quota', 'Allocated'],
      s.roles.map(function (r) {
        return [esc(r.name), esc(r.weight), r.quota ? amounts(r.quota) : '-', amounts(r.allocated)];
      }), '');
  }

  // active tasks first, then the most recently updated
  var tasks = s.tasks.slice().sort(function (a, b) {
    var ta = TERMINAL[a.state] ? 1 : 0, tb = TERMINAL[b.state] ? 1 : 0;
    return ta - tb || b.updatedAt - a.updatedAt;
  });
  html += '<h2>Tasks</h2>' + table(
    ['ID', 'Name', 'Framework', 'Agent', 'Role', 'State', 'Resources', 'Updated'],
    tasks.slice(0, MAX_TASK_ROWS).map(function (t) {
      var f = frameworksById[t.frameworkId], a = agentsById[t.agentId];
      return [
        '<code>' + esc(t.taskId) + '</code>', esc(t.name || ''), esc(f ? f.name : t.frameworkId),
        esc(a ? a.hostname : t.agentId), esc(t.role), pill('task', t.state), amounts(t.resources),
        esc(dur(now - t.updatedAt)) + ' ago',
      ];
    }), 'No tasks.');
  if (tasks.length > MAX_TASK_ROWS) {
    html += '<p class="empty">' + esc(tasks.length - MAX_TASK_ROWS) + ' more tasks not shown; see /api/v1/state.</p>';
  }
  return html;
}

if (typeof document !== 'undefined') {
  var TOKEN_KEY = 'regatta-token';
  var root = document.getElementById('cluster');
  var note = document.getElementById('note');
  var authForm = document.getElementById('auth');
  // one refresh loop: a token given restarts it, and what the old loop had in flight stops there
  var timer = null, loop = 0;
  var show = function (s) {
    root.innerHTML = renderCluster(s);
    note.textContent = 'updated ' + new Date().toLocaleTimeString();
    note.className = '';
  };
  var fail = function (message) {
    note.textContent = message;
    note.className = 'error';
  };
  // the API token (outside regatta dev reads need one): asked for when the master answers 401
  // or 403, kept for this tab only, sent as a bearer header (never in a URL)
  var storedToken = function () {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (err) { return ''; }
  };
  var headers = function () {
    var h = { accept: 'application/json' };
    var token = storedToken();
    if (token) h.authorization = 'Bearer ' + token;
    return h;
  };
  var initial = document.getElementById('initial-state');
  if (initial && initial.textContent) {
    try { show(JSON.parse(initial.textContent)); } catch (e) { fail('cannot read the state: ' + e.message); }
  }
  var tick = function () {
    var mine = loop;
    fetch('api/v1/state', { cache: 'no-store', redirect: 'manual', headers: headers() })
      .then(function (res) {
        // this master stepped down and points at the new leader: load the page from there
        if (res.type === 'opaqueredirect') { location.reload(); return; }
        if (res.status === 401 || res.status === 403) authForm.hidden = false;
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body && body.error ? body.error.message : 'HTTP ' + res.status);
          show(body);
        });
      })
      .catch(function (err) { if (mine === loop) fail('cannot refresh: ' + err.message); })
      .then(function () { if (mine === loop) timer = setTimeout(tick, 2000); });
  };
  authForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var input = document.getElementById('token');
    try { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); } catch (err) { /* private mode: not kept */ }
    input.value = '';
    authForm.hidden = true;
    clearTimeout(timer);
    loop++;
    tick();
  });
  timer = setTimeout(tick, initial && initial.textContent ? 2000 : 0);
}
`)
