// helpmesh federation overview for centre staff and coordinators. Plain
// JavaScript, no inline script (CSP). The admin token lives only in this
// tab's sessionStorage and is sent as Authorization: Bearer.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var KEY = 'helpmesh_admin_token';
  var token = '';
  var observer = '';
  var streamAbort = null;
  var streamGen = 0;
  var retryTimer = 0;
  var rosterTimer = 0;
  var policyDirty = false;
  var lastRoster = null;
  window.helpmeshOverviewLoadedAt = Date.now();

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { if (k === 'class') { e.className = attrs[k]; } else { e.setAttribute(k, attrs[k]); } }); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function status(t) { $('#status').textContent = t; }

  function api(method, path, body) {
    var opts = { method: method, headers: { Authorization: 'Bearer ' + token }, credentials: 'same-origin' };
    if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = typeof body === 'string' ? body : JSON.stringify(body); }
    return fetch(path, opts).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
        if (!r.ok) {
          var err = new Error((j && j.error) || ('HTTP ' + r.status));
          err.status = r.status;
          err.code = j && j.code;
          throw err;
        }
        return j;
      });
    });
  }

  // ---- token ----
  function showTokenForm(msg) {
    stopAll();
    $('#view').hidden = true;
    $('#forget-token').hidden = true;
    $('#token-form').hidden = false;
    $('#token-error').textContent = msg || '';
  }
  function stopAll() {
    streamGen++;
    if (streamAbort) { streamAbort.abort(); streamAbort = null; }
    window.clearTimeout(retryTimer);
    window.clearInterval(rosterTimer);
  }
  function unauthorized(err) {
    sessionStorage.removeItem(KEY);
    token = '';
    showTokenForm(err && err.message ? err.message : 'The admin token is wrong.');
    $('#token').focus();
  }

  $('#token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('#token').value.trim();
    if (!t) { $('#token-error').textContent = 'Enter the admin token.'; return; }
    token = t;
    $('#token').value = '';
    $('#token-submit').disabled = true;
    api('GET', '/v1/roster').then(function (r) {
      sessionStorage.setItem(KEY, token);
      start(r);
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); } else { $('#token-error').textContent = 'Cannot reach the centre: ' + err.message; }
    }).then(function () { $('#token-submit').disabled = false; });
  });
  $('#forget-token').addEventListener('click', function () {
    sessionStorage.removeItem(KEY);
    token = '';
    showTokenForm('');
    status('The token was forgotten.');
  });

  function start(roster) {
    $('#token-form').hidden = true;
    $('#view').hidden = false;
    $('#forget-token').hidden = false;
    if (roster) { renderRoster(roster); }
    connectStream();
    window.clearInterval(rosterTimer);
    rosterTimer = window.setInterval(loadRoster, 10000);
  }

  // ---- live federation view ----
  function setStreamState(t, live) {
    $('#stream-state').textContent = t;
    $('#stream-state').className = live ? 'live' : 'not-live';
  }

  function connectStream() {
    var gen = ++streamGen;
    if (streamAbort) { streamAbort.abort(); }
    var ctl = new AbortController();
    streamAbort = ctl;
    var watchdog = 0;
    function kick() {
      window.clearTimeout(watchdog);
      // The server sends at least every 10 s: silence means a dead stream.
      watchdog = window.setTimeout(function () { ctl.abort(); }, 25000);
    }
    function retry(msg) {
      window.clearTimeout(watchdog);
      if (gen !== streamGen) { return; }
      setStreamState('reconnecting… (' + msg + ')', false);
      retryTimer = window.setTimeout(connectStream, 2000);
    }
    kick();
    fetch('/v1/federation/events', { headers: { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' }, signal: ctl.signal, cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) { window.clearTimeout(watchdog); unauthorized(new Error('The admin token is wrong.')); return; }
        if (!r.ok || !r.body) { retry('HTTP ' + r.status); return; }
        setStreamState('live', true);
        var reader = r.body.getReader();
        var dec = new TextDecoder();
        var buf = '';
        function pump() {
          return reader.read().then(function (res) {
            if (gen !== streamGen) { reader.cancel().catch(function () {}); return; }
            if (res.done) { retry('stream ended'); return; }
            kick();
            buf += dec.decode(res.value, { stream: true });
            var i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              var evt = buf.slice(0, i);
              buf = buf.slice(i + 2);
              var data = evt.split('\n').filter(function (l) { return l.indexOf('data:') === 0; })
                .map(function (l) { return l.slice(5).replace(/^ /, ''); }).join('\n');
              if (data) {
                try { renderFederation(JSON.parse(data)); } catch (e) { /* skip a bad event */ }
              }
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (e) { retry(e && e.name === 'AbortError' ? 'no data' : 'connection lost'); });
  }

  function fmtCounts(m) {
    if (!m) { return '–'; }
    var keys = Object.keys(m).filter(function (k) { return m[k] > 0; }).sort();
    if (!keys.length) { return '0'; }
    return keys.map(function (k) { return k + ' ' + m[k]; }).join(', ');
  }
  function fmtSeconds(s) {
    if (s === null || s === undefined || isNaN(s)) { return '–'; }
    s = Math.round(s);
    if (s < 60) { return s + ' s'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min ' + (s % 60) + ' s'; }
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function renderFederation(v) {
    observer = v.observer || observer;
    if (lastRoster && lastRoster.shownFor !== observer) { renderRoster(lastRoster); }
    $('#observer').textContent = observer || '–';
    $('#leader').textContent = v.leader || 'none (no quorum)';
    var tbody = $('#centres tbody');
    var seen = {};
    (v.centres || []).forEach(function (c) {
      seen[c.id] = true;
      var row = tbody.querySelector('tr[data-centre="' + CSS.escape(c.id) + '"]');
      if (!row) { row = newCentreRow(c.id); tbody.appendChild(row); }
      var a = c.availability;
      var chat = a ? ((a.channels && a.channels.chat) || { free: {}, busy: {}, queue_length: 0, oldest_wait_millis: 0 }) : null;
      var g = c.gossip || 'unknown';
      row.querySelector('.name').textContent = c.name ? c.name + ' (' + c.id + ')' : c.id;
      var gc = row.querySelector('.gossip');
      gc.textContent = g;
      gc.className = 'gossip ' + g;
      row.querySelector('.raft').textContent = c.raft_role || 'none';
      row.querySelector('.accepting').textContent = a ? (a.accepting ? 'accepting' : 'not accepting') : '–';
      row.querySelector('.free').textContent = chat ? fmtCounts(chat.free) : '–';
      row.querySelector('.busy').textContent = chat ? fmtCounts(chat.busy) : '–';
      // Free for calls from a PBX: with a phone given and the centre's SIP
      // ingress running (docs/pbx.md).
      var phone = a && a.channels && a.channels.phone;
      row.querySelector('.phone-free').textContent = a ? fmtCounts((phone && phone.free) || {}) : '–';
      row.querySelector('.queue').textContent = chat ? String(chat.queue_length || 0) : '–';
      row.querySelector('.oldest-wait').textContent = chat ? (chat.oldest_wait_millis ? fmtSeconds(chat.oldest_wait_millis / 1000) : '–') : '–';
      row.querySelector('.seen').textContent = a ? fmtSeconds(c.availability_age_seconds) + ' ago' : 'never';
      row.classList.toggle('down', g === 'dead' || g === 'left');
      row.classList.toggle('self', c.id === observer);
      row.setAttribute('data-gossip', g);
    });
    Array.prototype.forEach.call(tbody.querySelectorAll('tr[data-centre]'), function (row) {
      if (!seen[row.getAttribute('data-centre')]) { row.remove(); }
    });
    status('Updated ' + new Date().toLocaleTimeString() + '.');
  }

  function newCentreRow(id) {
    var row = el('tr', { 'data-centre': id });
    row.appendChild(el('th', { scope: 'row', class: 'name' }, id));
    ['gossip', 'raft', 'accepting', 'free', 'busy', 'phone-free', 'queue', 'oldest-wait', 'seen'].forEach(function (k) { row.appendChild(el('td', { class: k })); });
    var td = el('td');
    var b = el('button', { type: 'button', class: 'remove remove-centre', 'aria-label': 'Remove centre ' + id }, 'Remove');
    b.addEventListener('click', function () {
      if (!window.confirm('Remove centre ' + id + ' from the federation? Its volunteers can no longer take overflowed contacts and it can no longer talk to the other centres.')) { return; }
      b.disabled = true;
      api('DELETE', '/v1/centres/' + encodeURIComponent(id)).then(function () {
        $('#centres-error').textContent = '';
        status('Centre ' + id + ' removed.');
        loadRoster();
      }).catch(function (err) {
        if (err.status === 401) { unauthorized(err); return; }
        $('#centres-error').textContent = 'Could not remove centre ' + id + ': ' + err.message;
      }).then(function () { b.disabled = false; });
    });
    td.appendChild(b);
    row.appendChild(td);
    return row;
  }

  // ---- roster: volunteers and policy ----
  function loadRoster() {
    return api('GET', '/v1/roster').then(renderRoster).catch(function (err) {
      if (err.status === 401) { unauthorized(err); }
    });
  }

  function renderRoster(r) {
    lastRoster = r;
    r.shownFor = observer;
    var tbody = $('#volunteers tbody');
    tbody.textContent = '';
    var here = observer;
    var vols = Object.keys(r.volunteers || {}).map(function (k) { return r.volunteers[k]; })
      .filter(function (v) { return !here || v.centre === here; })
      .sort(function (a, b) { return a.id < b.id ? -1 : 1; });
    vols.forEach(function (v) {
      var row = el('tr', { 'data-volunteer': v.id });
      row.appendChild(el('th', { scope: 'row' }, v.id));
      row.appendChild(el('td', null, v.alias));
      row.appendChild(el('td', null, (v.languages || []).join(', ')));
      row.appendChild(el('td', null, (v.channels || []).join(', ')));
      row.appendChild(el('td', null, String(v.capacity)));
      row.appendChild(el('td', null, v.role || 'volunteer'));
      var td = el('td', { class: 'row-actions' });
      var nc = el('button', { type: 'button', class: 'new-code', 'aria-label': 'New enrolment code for ' + v.id }, 'New code');
      nc.addEventListener('click', function () { newCode(v, nc); });
      td.appendChild(nc);
      var b = el('button', { type: 'button', class: 'remove remove-volunteer', 'aria-label': 'Remove volunteer ' + v.id }, 'Remove');
      b.addEventListener('click', function () {
        if (!window.confirm('Remove volunteer ' + v.id + ' (' + v.alias + ')? Their login stops working at once.')) { return; }
        b.disabled = true;
        api('DELETE', '/v1/volunteers/' + encodeURIComponent(v.id)).then(function () {
          status('Volunteer ' + v.id + ' removed.');
          loadRoster();
        }).catch(function (err) {
          if (err.status === 401) { unauthorized(err); return; }
          $('#add-error').textContent = 'Could not remove ' + v.id + ': ' + err.message;
          b.disabled = false;
        });
      });
      td.appendChild(b);
      row.appendChild(td);
      tbody.appendChild(row);
    });
    $('#no-volunteers').hidden = vols.length > 0;
    if (!policyDirty && document.activeElement !== $('#policy')) {
      $('#policy').value = JSON.stringify(r.policy, null, 2);
    }
  }

  // enrolLink is the volunteer's ready-to-send link. The id and code are in
  // the fragment, which browsers never send: the code reaches no server log
  // and no Referer (api/web/static/enrol.js reads it).
  function enrolLink(id, code) {
    return location.origin + '/enrol#v=' + encodeURIComponent(id) + '&c=' + encodeURIComponent(code);
  }

  // showEnrolment shows a fresh enrolment code and its link, with a copy
  // button, under the volunteer form.
  function showEnrolment(id, what, res) {
    var box = $('#enrolment');
    box.textContent = '';
    if (!res || !res.enrolment_code) { box.textContent = what; return; }
    var p = el('p');
    p.appendChild(document.createTextNode(what + ' Send ' + id + ' this one-time enrolment link, or give them the code in person (valid until ' +
      new Date(res.enrolment_expires).toLocaleString() + '; any earlier code no longer works): '));
    p.appendChild(el('code', { id: 'enrolment-code' }, res.enrolment_code));
    box.appendChild(p);
    var row = el('div', { class: 'link-row' });
    var link = el('input', { id: 'enrolment-link', type: 'text', readonly: '', spellcheck: 'false', 'aria-label': 'Enrolment link for ' + id });
    link.value = enrolLink(id, res.enrolment_code);
    var copy = el('button', { type: 'button', id: 'copy-link' }, 'Copy link');
    copy.addEventListener('click', function () {
      var done = function () { $('#copy-status').textContent = 'Link copied. Send it to ' + id + ' privately: it sets their password.'; };
      var fallback = function () {
        link.focus();
        link.select();
        var ok = false;
        try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
        if (ok) { done(); } else { $('#copy-status').textContent = 'Select the link and copy it (Ctrl+C).'; }
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(link.value).then(done, fallback);
      } else {
        fallback();
      }
    });
    row.appendChild(link);
    row.appendChild(copy);
    box.appendChild(row);
    box.appendChild(el('p', { id: 'copy-status', class: 'quiet', role: 'status' }));
    box.scrollIntoView({ block: 'nearest' });
  }

  // newCode issues a fresh enrolment code for an enrolled volunteer (a lost
  // code, a forgotten password): their old password works until they set
  // the new one.
  function newCode(v, b) {
    if (!window.confirm('Issue a new enrolment code for ' + v.id + ' (' + v.alias + ')? Any earlier code stops working. Their password keeps working until they set a new one with the code.')) { return; }
    b.disabled = true;
    $('#add-error').textContent = '';
    api('POST', '/v1/volunteers/' + encodeURIComponent(v.id) + '/enrolment').then(function (res) {
      showEnrolment(v.id, 'New enrolment code for ' + v.id + '.', res);
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      $('#add-error').textContent = 'No new code for ' + v.id + ': ' + err.message;
    }).then(function () { b.disabled = false; });
  }

  $('#add-volunteer').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var split = function (s) { return s.split(/[\s,]+/).map(function (x) { return x.trim().toLowerCase(); }).filter(Boolean); };
    var channels = Array.prototype.map.call(document.querySelectorAll('#add-volunteer input[name=channel]:checked'), function (x) { return x.value; });
    var v = {
      id: $('#nv-id').value.trim(), centre: observer, alias: $('#nv-alias').value.trim(),
      channels: channels, languages: split($('#nv-languages').value),
      capacity: parseInt($('#nv-capacity').value, 10) || 0, role: $('#nv-role').value
    };
    $('#add-error').textContent = '';
    $('#enrolment').textContent = '';
    if (!observer) { $('#add-error').textContent = 'Waiting for the federation view; try again in a moment.'; return; }
    if (!channels.length) { $('#add-error').textContent = 'Choose at least one channel.'; return; }
    $('#nv-submit').disabled = true;
    api('POST', '/v1/volunteers', v).then(function (res) {
      showEnrolment(v.id, 'Volunteer ' + v.id + ' saved.', res);
      $('#nv-id').value = '';
      $('#nv-alias').value = '';
      loadRoster();
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      $('#add-error').textContent = 'Not saved: ' + err.message;
    }).then(function () { $('#nv-submit').disabled = false; });
  });

  $('#policy').addEventListener('input', function () { policyDirty = true; });
  $('#policy-reload').addEventListener('click', function () {
    policyDirty = false;
    $('#policy-error').textContent = '';
    loadRoster().then(function () { $('#policy-status').textContent = 'Reloaded from the roster.'; });
  });
  $('#policy-save').addEventListener('click', function () {
    var text = $('#policy').value;
    $('#policy-error').textContent = '';
    $('#policy-status').textContent = '';
    try { JSON.parse(text); } catch (e) {
      $('#policy-error').textContent = 'The policy is not valid JSON: ' + e.message;
      $('#policy').focus();
      return;
    }
    $('#policy-save').disabled = true;
    api('PUT', '/v1/policy', text).then(function (p) {
      policyDirty = false;
      $('#policy').value = JSON.stringify(p, null, 2);
      $('#policy-status').textContent = 'Policy saved for the whole federation.';
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      $('#policy-error').textContent = 'Not saved: ' + err.message;
    }).then(function () { $('#policy-save').disabled = false; });
  });

  // ---- start ----
  fetch('/v1/info').then(function (r) { return r.ok ? r.json() : null; }).then(function (info) {
    if (info && info.name) { $('#centre-name').textContent = info.name; }
    if (info && info.centre && !observer) { observer = info.centre; }
  }).catch(function () {});
  var saved = sessionStorage.getItem(KEY);
  if (saved) {
    token = saved;
    loadRoster();
    start(null);
  } else {
    $('#token').focus();
  }
})();
