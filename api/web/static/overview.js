// helpmesh federation overview for centre staff and coordinators. Plain
// JavaScript, no inline script (CSP). The admin token lives only in this
// tab's sessionStorage and is sent as Authorization: Bearer; without one,
// the page works with a supervisor's or coordinator's session cookie (the
// console's login), and the server decides per request what the role may
// do. Every text goes
// through the staff pages' catalogue helper (static/i18n.js, window.I18N):
// keys overview.* and common.*.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var I = window.I18N;
  var t = I.t;
  var KEY = 'helpmesh_admin_token';
  var token = '';
  var observer = '';
  var streamAbort = null;
  var streamGen = 0;
  var retryTimer = 0;
  var rosterTimer = 0;
  var lastRoster = null;
  window.helpmeshOverviewLoadedAt = Date.now();

  var el = I.el;
  // say shows t(key, vars) in el, through language switches; no key clears el.
  var say = I.say;
  function status(key, vars) { say($('#status'), key, vars); }
  // failed shows err (from api) in el with key, the server's words as {error}.
  function failed(el, key, err, vars) {
    var v = vars || {};
    v.error = err.message;
    say(el, key, v);
  }

  // authHeaders is the admin token's header, or none for a session.
  function authHeaders() { return token ? { Authorization: 'Bearer ' + token } : {}; }

  function api(method, path, body) {
    var opts = { method: method, headers: authHeaders(), credentials: 'same-origin' };
    if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = typeof body === 'string' ? body : JSON.stringify(body); }
    return fetch(path, opts).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
        if (!r.ok) {
          var err = new Error((j && j.error) || t('common.http_status', { status: r.status }));
          err.status = r.status;
          err.code = j && j.code;
          throw err;
        }
        return j;
      });
    });
  }

  // ---- token ----
  function showTokenForm(key, vars) {
    stopAll();
    $('#view').hidden = true;
    $('#forget-token').hidden = true;
    $('#token-form').hidden = false;
    say($('#token-error'), key, vars);
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
    if (err && err.message) { showTokenForm('common.server_error', { error: err.message }); } else { showTokenForm('overview.token_wrong'); }
    $('#token').focus();
  }

  $('#token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var given = $('#token').value.trim();
    if (!given) { say($('#token-error'), 'overview.token_missing'); return; }
    token = given;
    $('#token').value = '';
    $('#token-submit').disabled = true;
    api('GET', '/v1/roster').then(function (r) {
      sessionStorage.setItem(KEY, token);
      start(r);
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); } else { failed($('#token-error'), 'overview.cannot_reach', err); }
    }).then(function () { $('#token-submit').disabled = false; });
  });
  $('#forget-token').addEventListener('click', function () {
    sessionStorage.removeItem(KEY);
    token = '';
    showTokenForm();
    status('overview.token_forgotten');
  });

  function start(roster) {
    $('#token-form').hidden = true;
    $('#view').hidden = false;
    $('#forget-token').hidden = !token;
    if (roster) { renderRoster(roster); loadAudit(); }
    loadPolicy();
    connectStream();
    window.clearInterval(rosterTimer);
    rosterTimer = window.setInterval(loadRoster, 10000);
  }

  // ---- live federation view ----
  function setStreamState(key, vars, live) {
    say($('#stream-state'), key, vars);
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
      setStreamState('overview.stream_reconnecting', { why: msg }, false);
      retryTimer = window.setTimeout(connectStream, 2000);
    }
    kick();
    var eh = authHeaders();
    eh.Accept = 'text/event-stream';
    fetch('/v1/federation/events', { headers: eh, credentials: 'same-origin', signal: ctl.signal, cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) { window.clearTimeout(watchdog); unauthorized(null); return; }
        if (!r.ok || !r.body) { retry(t('common.http_status', { status: r.status })); return; }
        setStreamState('overview.stream_live', null, true);
        var reader = r.body.getReader();
        var dec = new TextDecoder();
        var buf = '';
        function pump() {
          return reader.read().then(function (res) {
            if (gen !== streamGen) { reader.cancel().catch(function () {}); return; }
            if (res.done) { retry(t('overview.stream_ended')); return; }
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
      .catch(function (e) { retry(t(e && e.name === 'AbortError' ? 'overview.stream_no_data' : 'overview.stream_lost')); });
  }

  function fmtCounts(m) {
    if (!m) { return '–'; }
    var keys = Object.keys(m).filter(function (k) { return m[k] > 0; }).sort();
    if (!keys.length) { return '0'; }
    return keys.map(function (k) { return k + ' ' + m[k]; }).join(', ');
  }
  // fmtSeconds is a duration as key and vars for say.
  function fmtSeconds(s) {
    s = Math.round(s);
    if (s < 60) { return { key: 'overview.dur_s', vars: { s: s } }; }
    if (s < 3600) { return { key: 'overview.dur_min_s', vars: { min: Math.floor(s / 60), s: s % 60 } }; }
    return { key: 'overview.dur_h_min', vars: { h: Math.floor(s / 3600), min: Math.floor((s % 3600) / 60) } };
  }
  // plain shows a value that needs no words (a dash, a centre id) in el.
  function plain(el, text) { say(el); el.textContent = text; }

  function renderFederation(v) {
    observer = v.observer || observer;
    if (lastRoster && lastRoster.shownFor !== observer) { renderRoster(lastRoster); }
    $('#observer').textContent = observer || '–';
    if (v.leader) { plain($('#leader'), v.leader); } else { say($('#leader'), 'overview.no_leader'); }
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
      say(gc, 'overview.gossip_' + (['alive', 'suspect', 'dead', 'left'].indexOf(g) >= 0 ? g : 'unknown'));
      gc.className = 'gossip ' + g;
      say(row.querySelector('.raft'), 'overview.raft_' + (['leader', 'voter', 'nonvoter'].indexOf(c.raft_role) >= 0 ? c.raft_role : 'none'));
      if (a) { say(row.querySelector('.accepting'), a.accepting ? 'overview.accepting' : 'overview.not_accepting'); } else { plain(row.querySelector('.accepting'), '–'); }
      row.querySelector('.free').textContent = chat ? fmtCounts(chat.free) : '–';
      row.querySelector('.busy').textContent = chat ? fmtCounts(chat.busy) : '–';
      // Free for calls from a PBX: with a phone given and the centre's SIP
      // ingress running (docs/pbx.md).
      var phone = a && a.channels && a.channels.phone;
      row.querySelector('.phone-free').textContent = a ? fmtCounts((phone && phone.free) || {}) : '–';
      row.querySelector('.queue').textContent = chat ? String(chat.queue_length || 0) : '–';
      var ow = row.querySelector('.oldest-wait');
      // A centre publishes when its desk changes, not as a wait grows: the
      // oldest wait is the published one plus the time since.
      if (chat && chat.queue_length > 0) {
        var waited = (chat.oldest_wait_millis || 0) / 1000 + (isNaN(c.availability_age_seconds) ? 0 : c.availability_age_seconds);
        var d = fmtSeconds(waited); say(ow, d.key, d.vars);
      } else { plain(ow, '–'); }
      var seenCell = row.querySelector('.seen');
      if (a && !isNaN(c.availability_age_seconds)) {
        var ago = fmtSeconds(c.availability_age_seconds);
        say(seenCell, 'overview.ago', { duration: { t: ago.key, vars: ago.vars } });
      } else { say(seenCell, 'overview.never'); }
      row.classList.toggle('down', g === 'dead' || g === 'left');
      row.classList.toggle('self', c.id === observer);
      row.setAttribute('data-gossip', g);
    });
    Array.prototype.forEach.call(tbody.querySelectorAll('tr[data-centre]'), function (row) {
      if (!seen[row.getAttribute('data-centre')]) { row.remove(); }
    });
    status('overview.updated', { time: new Date().toLocaleTimeString(I.lang() || undefined) });
  }

  function newCentreRow(id) {
    var row = el('tr', { 'data-centre': id });
    row.appendChild(el('th', { scope: 'row', class: 'name' }, id));
    ['gossip', 'raft', 'accepting', 'free', 'busy', 'phone-free', 'queue', 'oldest-wait', 'seen'].forEach(function (k) { row.appendChild(el('td', { class: k })); });
    var td = el('td');
    var b = I.set(el('button', { type: 'button', class: 'remove remove-centre' }), 'overview.remove', { id: id });
    I.setAttr(b, 'aria-label', 'overview.remove_centre_label');
    b.addEventListener('click', function () {
      if (!window.confirm(t('overview.remove_centre_confirm', { id: id }))) { return; }
      b.disabled = true;
      api('DELETE', '/v1/centres/' + encodeURIComponent(id)).then(function () {
        say($('#centres-error'));
        status('overview.centre_removed', { id: id });
        loadRoster();
      }).catch(function (err) {
        if (err.status === 401) { unauthorized(err); return; }
        failed($('#centres-error'), 'overview.centre_not_removed', err, { id: id });
      }).then(function () { b.disabled = false; });
    });
    td.appendChild(b);
    row.appendChild(td);
    return row;
  }

  // ---- roster: volunteers and policy ----
  function loadRoster() {
    return api('GET', '/v1/roster').then(function (r) { renderRoster(r); loadAudit(); }).catch(function (err) {
      if (err.status === 401 || err.status === 403) { unauthorized(err); }
    });
  }

  // ---- audit log ----
  function loadAudit() {
    return api('GET', '/v1/audit?limit=50').then(renderAudit).catch(function (err) {
      failed($('#audit-error'), 'common.server_error', err);
    });
  }

  function renderAudit(a) {
    say($('#audit-error'));
    var tbody = $('#audit tbody');
    tbody.textContent = '';
    var entries = (a && a.entries) || [];
    $('#no-audit').hidden = entries.length > 0;
    entries.forEach(function (e) {
      var row = el('tr', { 'data-action': e.action, 'data-actor': e.actor });
      row.appendChild(el('td', null, new Date(e.time).toLocaleString()));
      row.appendChild(el('td', null, e.actor + (e.role && e.role !== e.actor ? ' (' + e.role + ')' : '')));
      row.appendChild(el('td', null, e.action));
      row.appendChild(el('td', null, e.target || ''));
      row.appendChild(el('td', { class: e.status >= 400 ? 'error' : '' }, String(e.status)));
      tbody.appendChild(row);
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
      var chans = el('td');
      (v.channels || []).forEach(function (ch, i) {
        if (i) { chans.appendChild(document.createTextNode(', ')); }
        chans.appendChild(ch === 'chat' || ch === 'phone' ? I.set(el('span'), 'common.channel_' + ch) : el('span', null, ch));
      });
      row.appendChild(chans);
      row.appendChild(el('td', null, String(v.capacity)));
      var role = v.role || 'volunteer';
      row.appendChild(role === 'volunteer' || role === 'supervisor' || role === 'coordinator' ? I.set(el('td'), 'common.role_' + role) : el('td', null, role));
      var td = el('td', { class: 'row-actions' });
      var who = { id: v.id, alias: v.alias };
      var nc = I.set(el('button', { type: 'button', class: 'new-code' }), 'overview.new_code', who);
      I.setAttr(nc, 'aria-label', 'overview.new_code_label');
      nc.addEventListener('click', function () { newCode(v, nc); });
      td.appendChild(nc);
      var b = I.set(el('button', { type: 'button', class: 'remove remove-volunteer' }), 'overview.remove', who);
      I.setAttr(b, 'aria-label', 'overview.remove_volunteer_label');
      b.addEventListener('click', function () {
        if (!window.confirm(t('overview.remove_volunteer_confirm', who))) { return; }
        b.disabled = true;
        api('DELETE', '/v1/volunteers/' + encodeURIComponent(v.id)).then(function () {
          status('overview.volunteer_removed', who);
          loadRoster();
        }).catch(function (err) {
          if (err.status === 401) { unauthorized(err); return; }
          failed($('#add-error'), 'overview.volunteer_not_removed', err, { id: v.id });
          b.disabled = false;
        });
      });
      td.appendChild(b);
      row.appendChild(td);
      tbody.appendChild(row);
    });
    $('#no-volunteers').hidden = vols.length > 0;
    // Someone changed the policy: show it, unless the form holds edits (or
    // a conflict) of its own, which a refresh never replaces.
    if (pol.base && !pol.conflict && !same(norm(r.policy), pol.base) && !policyDirty() && !$('#policy-form').contains(document.activeElement)) {
      loadPolicy();
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
  function showEnrolment(id, whatKey, res) {
    var box = $('#enrolment');
    box.textContent = '';
    var who = { id: id };
    box.appendChild(I.set(el('p'), whatKey, who));
    if (!res || !res.enrolment_code) { return; }
    var p = el('p');
    p.appendChild(I.set(el('span'), 'overview.enrol_send', { id: id, until: new Date(res.enrolment_expires).toLocaleString(I.lang() || undefined) }));
    p.appendChild(document.createTextNode(' '));
    p.appendChild(el('code', { id: 'enrolment-code' }, res.enrolment_code));
    box.appendChild(p);
    var row = el('div', { class: 'link-row' });
    var link = I.setAttr(el('input', { id: 'enrolment-link', type: 'text', readonly: '', spellcheck: 'false' }), 'aria-label', 'overview.enrol_link_label', who);
    link.value = enrolLink(id, res.enrolment_code);
    var copy = I.set(el('button', { type: 'button', id: 'copy-link' }), 'overview.copy_link');
    copy.addEventListener('click', function () {
      var done = function () { say($('#copy-status'), 'overview.link_copied', who); };
      var fallback = function () {
        link.focus();
        link.select();
        var ok = false;
        try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
        if (ok) { done(); } else { say($('#copy-status'), 'overview.copy_by_hand'); }
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
    if (!window.confirm(t('overview.new_code_confirm', { id: v.id, alias: v.alias }))) { return; }
    b.disabled = true;
    say($('#add-error'));
    api('POST', '/v1/volunteers/' + encodeURIComponent(v.id) + '/enrolment').then(function (res) {
      showEnrolment(v.id, 'overview.new_code_for', res);
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      failed($('#add-error'), 'overview.no_new_code', err, { id: v.id });
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
    say($('#add-error'));
    $('#enrolment').textContent = '';
    if (!observer) { say($('#add-error'), 'overview.waiting_view'); return; }
    if (!channels.length) { say($('#add-error'), 'overview.choose_channel'); return; }
    $('#nv-submit').disabled = true;
    api('POST', '/v1/volunteers', v).then(function (res) {
      showEnrolment(v.id, 'overview.volunteer_saved', res);
      $('#nv-id').value = '';
      $('#nv-alias').value = '';
      loadRoster();
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      failed($('#add-error'), 'overview.not_saved', err);
    }).then(function () { $('#nv-submit').disabled = false; });
  });

  // ---- the national policy, as a form ----
  // Loaded with GET /v1/policy through the leader, keeping its ETag; saved
  // with PATCH /v1/policy (a JSON merge patch) of only the fields that
  // differ from what was loaded, with If-Match: a change someone else made
  // meanwhile is a 412 and nothing is overwritten (api/policy.go). The
  // server's refusals name the field (and a JSON pointer to the value): the
  // message goes under that field, the input it points at is marked.
  var POLICY_FIELDS = ['languages', 'topics', 'overflow_after_seconds', 'service_level_seconds', 'emergency_numbers', 'open_hours', 'time_zone'];
  // Each field's name on the page, for the list of what someone else changed.
  var FIELD_KEYS = {
    languages: 'overview.pf_languages', topics: 'overview.pf_topics', overflow_after_seconds: 'overview.pf_overflow',
    service_level_seconds: 'overview.pf_service_level', emergency_numbers: 'overview.pf_emergency',
    open_hours: 'overview.pf_open_hours', time_zone: 'overview.pf_time_zone'
  };
  var CHANNELS = ['chat', 'phone'];
  var pol = { base: null, etag: '', conflict: false, theirs: null, gen: 0 };

  // canonical is JSON with sorted keys, to compare two values.
  function canonical(v) {
    if (Array.isArray(v)) { return '[' + v.map(canonical).join(',') + ']'; }
    if (v && typeof v === 'object') {
      return '{' + Object.keys(v).sort().map(function (k) { return JSON.stringify(k) + ':' + canonical(v[k]); }).join(',') + '}';
    }
    return JSON.stringify(v === undefined ? null : v);
  }
  function same(a, b) { return canonical(a) === canonical(b); }

  // norm is a policy as the form holds it: every field present, absent
  // optional ones empty, so that a loaded policy and the form compare.
  function norm(p) {
    p = p || {};
    var ov = {};
    Object.keys(p.overflow_after_seconds || {}).forEach(function (k) {
      if (p.overflow_after_seconds[k] !== null && p.overflow_after_seconds[k] !== undefined) { ov[k] = p.overflow_after_seconds[k]; }
    });
    return {
      languages: (p.languages || []).slice(),
      topics: (p.topics || []).slice(),
      overflow_after_seconds: ov,
      service_level_seconds: p.service_level_seconds === undefined ? null : p.service_level_seconds,
      emergency_numbers: (p.emergency_numbers || []).map(function (e) {
        var names = {};
        Object.keys(e.names || {}).forEach(function (l) { if (e.names[l]) { names[l] = e.names[l]; } });
        return { name: e.name || '', number: e.number || '', names: names };
      }),
      open_hours: (p.open_hours || []).map(function (o) { return { weekday: o.weekday, from: o.from, to: o.to }; }),
      time_zone: p.time_zone || ''
    };
  }

  function splitCodes(s) { return s.split(/[\s,;]+/).map(function (x) { return x.trim().toLowerCase(); }).filter(Boolean); }
  // num is a number input's value: a number, the text when it is not one
  // (the server names what is wrong), null when empty.
  function num(input) {
    var v = input.value.trim();
    if (v === '') { return null; }
    var n = Number(v);
    return isNaN(n) ? v : n;
  }

  function weekdayName(d) {
    try {
      return new Intl.DateTimeFormat(I.lang() || 'en', { weekday: 'long', timeZone: 'UTC' }).format(new Date(Date.UTC(2024, 0, 7 + d)));
    } catch (e) { return String(d); }
  }

  function removeButton(labelKey, vars, row) {
    var b = I.set(el('button', { type: 'button', class: 'remove' }), 'overview.pf_remove');
    I.setAttr(b, 'aria-label', labelKey, vars);
    b.addEventListener('click', function () {
      var list = row.parentNode;
      row.remove();
      renumber(list);
      policyEdited();
    });
    return b;
  }

  // renumber keeps each row's accessible names in step with its place.
  function renumber(list) {
    Array.prototype.forEach.call(list.children, function (row, i) {
      Array.prototype.forEach.call(row.querySelectorAll('[data-i18n-vars]'), function (e) {
        var v = JSON.parse(e.getAttribute('data-i18n-vars') || '{}');
        if (v && v.n !== undefined) {
          v.n = i + 1;
          e.setAttribute('data-i18n-vars', JSON.stringify(v));
          I.apply(e);
        }
      });
    });
  }

  function addTopicRow(id) {
    var list = $('#pf-topics');
    var n = list.children.length + 1;
    var row = el('li', { class: 'row topic-row' });
    var input = el('input', { class: 'topic-id', spellcheck: 'false', autocapitalize: 'off', maxlength: '32' });
    input.value = id || '';
    I.setAttr(input, 'aria-label', 'overview.pf_topic_n', { n: n });
    var shown = el('span', { class: 'quiet topic-label' });
    var showLabel = function () { if (input.value.trim()) { I.setLabel(shown, 'topic', input.value.trim()); } else { shown.removeAttribute('data-i18n-label'); shown.textContent = ''; } };
    input.addEventListener('input', showLabel);
    showLabel();
    row.appendChild(input);
    row.appendChild(shown);
    row.appendChild(removeButton('overview.pf_remove_topic', { n: n }, row));
    list.appendChild(row);
    return input;
  }

  // nameLanguages are the languages a number's names are asked in: the
  // policy's (as the form has them now), then any other it has a name in.
  function nameLanguages(have) {
    var langs = splitCodes($('#pf-languages').value);
    Object.keys(have).sort().forEach(function (l) { if (have[l] && langs.indexOf(l) < 0) { langs.push(l); } });
    return langs;
  }

  function fillNames(row, names) {
    var box = row.querySelector('.names');
    box.textContent = '';
    nameLanguages(names).forEach(function (l) {
      var id = 'pf-en-' + row.getAttribute('data-row') + '-' + l;
      var lab = I.set(el('label', { for: id }), 'overview.pf_name_in', { lang: l });
      var input = el('input', { id: id, class: 'name-in', 'data-lang': l, lang: l, maxlength: '60' });
      input.value = names[l] || '';
      box.appendChild(lab);
      box.appendChild(input);
    });
  }

  function rowNames(row) {
    var names = {};
    Array.prototype.forEach.call(row.querySelectorAll('.name-in'), function (i) {
      if (i.value.trim()) { names[i.getAttribute('data-lang')] = i.value.trim(); }
    });
    return names;
  }

  var rowSeq = 0;
  function addEmergencyRow(e) {
    e = e || { name: '', number: '', names: {} };
    var list = $('#pf-emergency');
    var n = list.children.length + 1;
    var key = String(++rowSeq);
    var row = el('div', { class: 'emergency-row', 'data-row': key });
    var head = el('div', { class: 'pair' });
    var numLab = I.set(el('label', { for: 'pf-en-' + key + '-number' }), 'overview.pf_number');
    var number = el('input', { id: 'pf-en-' + key + '-number', class: 'number', inputmode: 'tel', maxlength: '20' });
    number.value = e.number;
    var nameLab = I.set(el('label', { for: 'pf-en-' + key + '-name' }), 'overview.pf_default_name');
    var name = el('input', { id: 'pf-en-' + key + '-name', class: 'name', maxlength: '60' });
    name.value = e.name;
    [numLab, number, nameLab, name].forEach(function (x) { head.appendChild(x); });
    row.appendChild(head);
    row.appendChild(el('div', { class: 'pair names' }));
    row.appendChild(removeButton('overview.pf_remove_emergency', { n: n }, row));
    list.appendChild(row);
    fillNames(row, e.names || {});
    return number;
  }

  function addHoursRow(o) {
    o = o || { weekday: 1, from: '', to: '' };
    var list = $('#pf-hours');
    var n = list.children.length + 1;
    var row = el('li', { class: 'row hours-row' });
    var day = el('select', { class: 'weekday' });
    I.setAttr(day, 'aria-label', 'overview.pf_weekday_n', { n: n });
    for (var d = 0; d < 7; d++) { day.appendChild(el('option', { value: String(d) }, weekdayName(d))); }
    day.value = String(o.weekday);
    var from = el('input', { type: 'time', class: 'from' });
    I.setAttr(from, 'aria-label', 'overview.pf_from_n', { n: n });
    from.value = o.from || '';
    var to = el('input', { type: 'time', class: 'to' });
    I.setAttr(to, 'aria-label', 'overview.pf_to_n', { n: n });
    to.value = o.to || '';
    row.appendChild(day);
    row.appendChild(from);
    row.appendChild(el('span', { 'aria-hidden': 'true' }, '–'));
    row.appendChild(to);
    row.appendChild(removeButton('overview.pf_remove_hours', { n: n }, row));
    list.appendChild(row);
    return day;
  }

  I.onChange(function () {
    Array.prototype.forEach.call(document.querySelectorAll('#pf-hours select.weekday option'), function (o) { o.textContent = weekdayName(Number(o.value)); });
  });

  // fillForm shows a normalised policy in the form.
  function fillForm(p) {
    $('#pf-languages').value = p.languages.join(', ');
    $('#pf-topics').textContent = '';
    p.topics.forEach(function (x) { addTopicRow(x); });
    CHANNELS.forEach(function (ch) {
      var v = p.overflow_after_seconds[ch];
      $('#pf-overflow-' + ch).value = v === undefined || v === null ? '' : String(v);
    });
    $('#pf-service-level').value = p.service_level_seconds === null ? '' : String(p.service_level_seconds);
    $('#pf-emergency').textContent = '';
    p.emergency_numbers.forEach(function (e) { addEmergencyRow(e); });
    $('#pf-hours').textContent = '';
    p.open_hours.forEach(function (o) { addHoursRow(o); });
    $('#pf-time-zone').value = p.time_zone;
  }

  // readForm is the form as a normalised policy (value) and as the patch
  // values of its fields (patch). It gives each input the JSON pointer of
  // the value it holds in the patch, so that a refusal finds its input.
  function readForm() {
    var v = {}, patch = {};
    var langs = splitCodes($('#pf-languages').value);
    v.languages = langs;
    patch.languages = langs;
    var topics = [];
    Array.prototype.forEach.call(document.querySelectorAll('#pf-topics input.topic-id'), function (i) {
      i.removeAttribute('data-pointer');
      var x = i.value.trim();
      if (x) { i.setAttribute('data-pointer', '/topics/' + topics.length); topics.push(x); }
    });
    v.topics = topics;
    patch.topics = topics;
    v.overflow_after_seconds = {};
    patch.overflow_after_seconds = {};
    CHANNELS.forEach(function (ch) {
      var n = num($('#pf-overflow-' + ch));
      patch.overflow_after_seconds[ch] = n;
      if (n !== null) { v.overflow_after_seconds[ch] = n; }
    });
    v.service_level_seconds = num($('#pf-service-level'));
    patch.service_level_seconds = v.service_level_seconds;
    var ems = [];
    Array.prototype.forEach.call(document.querySelectorAll('#pf-emergency .emergency-row'), function (row) {
      var e = { name: row.querySelector('input.name').value.trim(), number: row.querySelector('input.number').value.trim(), names: rowNames(row) };
      row.querySelectorAll('input').forEach(function (i) { i.removeAttribute('data-pointer'); });
      if (!e.name && !e.number && !Object.keys(e.names).length) { return; }
      var at = '/emergency_numbers/' + ems.length;
      row.querySelector('input.number').setAttribute('data-pointer', at + '/number');
      row.querySelector('input.name').setAttribute('data-pointer', at + '/name');
      row.querySelectorAll('input.name-in').forEach(function (i) { i.setAttribute('data-pointer', at + '/names/' + i.getAttribute('data-lang')); });
      ems.push(e);
    });
    v.emergency_numbers = ems;
    patch.emergency_numbers = ems.length ? ems.map(function (e) {
      var out = { name: e.name, number: e.number };
      if (Object.keys(e.names).length) { out.names = e.names; }
      return out;
    }) : null;
    var hours = [];
    Array.prototype.forEach.call(document.querySelectorAll('#pf-hours .hours-row'), function (row) {
      var o = { weekday: Number(row.querySelector('select').value), from: row.querySelector('input.from').value, to: row.querySelector('input.to').value };
      row.querySelector('select').setAttribute('data-pointer', '/open_hours/' + hours.length);
      hours.push(o);
    });
    v.open_hours = hours;
    patch.open_hours = hours.length ? hours : null;
    v.time_zone = $('#pf-time-zone').value.trim();
    patch.time_zone = v.time_zone || null;
    return { value: v, patch: patch };
  }

  function changedFields(v) {
    if (!pol.base) { return []; }
    return POLICY_FIELDS.filter(function (k) { return !same(v[k], pol.base[k]); });
  }
  function policyDirty() { return !!pol.base && changedFields(readForm().value).length > 0; }

  function clearPolicyErrors() {
    POLICY_FIELDS.forEach(function (f) { say($('#pf-err-' + f)); });
    say($('#policy-error'));
    Array.prototype.forEach.call(document.querySelectorAll('#policy-form [aria-invalid]'), function (i) { i.removeAttribute('aria-invalid'); });
  }
  function policyEdited() {
    say($('#policy-status'));
    if (pol.base && !pol.conflict) {
      if (changedFields(readForm().value).length) { say($('#policy-status'), 'overview.pf_unsaved'); }
    }
  }
  $('#policy-form').addEventListener('input', policyEdited);
  $('#policy-form').addEventListener('change', policyEdited);

  // The names asked for follow the languages field.
  $('#pf-languages').addEventListener('change', function () {
    Array.prototype.forEach.call(document.querySelectorAll('#pf-emergency .emergency-row'), function (row) { fillNames(row, rowNames(row)); });
  });
  $('#pf-add-topic').addEventListener('click', function () { addTopicRow('').focus(); });
  $('#pf-add-emergency').addEventListener('click', function () { addEmergencyRow().focus(); });
  $('#pf-add-hours').addEventListener('click', function () { addHoursRow().focus(); });

  // fetchPolicy reads the policy through the leader: what a PATCH is
  // checked against, so a lagging local copy cannot make the save a 412.
  function fetchPolicy() {
    return fetch('/v1/policy?consistency=linearizable', { headers: authHeaders(), credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (b) {
        if (!r.ok) {
          var err = new Error((b && b.error) || t('common.http_status', { status: r.status }));
          err.status = r.status;
          throw err;
        }
        return { policy: b, etag: r.headers.get('ETag') || '' };
      });
    });
  }

  function showPolicy(res) {
    pol.base = norm(res.policy);
    pol.etag = res.etag;
    fillForm(pol.base);
  }

  function hideConflict() {
    pol.conflict = false;
    pol.theirs = null;
    $('#policy-conflict').hidden = true;
    $('#policy-theirs').textContent = '';
    $('#policy-theirs-intro').hidden = true;
  }

  function loadPolicy(doneKey) {
    var gen = ++pol.gen;
    return fetchPolicy().then(function (res) {
      if (gen !== pol.gen) { return; }
      hideConflict();
      clearPolicyErrors();
      showPolicy(res);
      say($('#policy-status'), doneKey || null);
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      failed($('#policy-error'), 'overview.pf_not_loaded', err);
    });
  }

  // showConflict keeps the form as the coordinator left it and says what
  // the other change was, read fresh.
  function showConflict() {
    pol.conflict = true;
    say($('#policy-status'));
    $('#policy-conflict').hidden = false;
    $('#policy-theirs').textContent = '';
    $('#policy-theirs-intro').hidden = true;
    var gen = ++pol.gen;
    fetchPolicy().then(function (res) {
      if (gen !== pol.gen) { return; }
      pol.theirs = res;
      var now = norm(res.policy);
      var theirs = POLICY_FIELDS.filter(function (k) { return !same(now[k], pol.base[k]); });
      theirs.forEach(function (k) { $('#policy-theirs').appendChild(I.set(el('li', { 'data-field': k }), FIELD_KEYS[k])); });
      $('#policy-theirs-intro').hidden = theirs.length === 0;
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      failed($('#policy-error'), 'overview.pf_not_loaded', err);
    });
    $('#policy-conflict').scrollIntoView({ block: 'nearest' });
  }

  // showFieldError puts a refusal under the field it names and marks the
  // input its pointer (or the nearest part of it) is about.
  function showFieldError(b) {
    var box = b.field && $('#pf-err-' + b.field);
    if (!box) { say($('#policy-error'), 'overview.not_saved', { error: b.error }); return; }
    say(box, 'common.server_error', { error: b.error });
    var input = null;
    var ptr = b.pointer || '/' + b.field;
    while (!input && ptr) {
      input = $('#policy-form [data-pointer="' + CSS.escape(ptr) + '"]');
      ptr = ptr.slice(0, Math.max(ptr.lastIndexOf('/'), 0));
    }
    if (!input) { input = $('#policy-form fieldset[data-field="' + CSS.escape(b.field) + '"] input, #policy-form fieldset[data-field="' + CSS.escape(b.field) + '"] select'); }
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }

  $('#policy-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (!pol.base) { loadPolicy(); return; }
    if (pol.conflict) { $('#policy-conflict').scrollIntoView({ block: 'nearest' }); return; }
    clearPolicyErrors();
    say($('#policy-status'));
    var f = readForm();
    var changed = changedFields(f.value);
    if (!changed.length) { say($('#policy-status'), 'overview.pf_nothing_changed'); return; }
    var patch = {};
    changed.forEach(function (k) { patch[k] = f.patch[k]; });
    $('#policy-save').disabled = true;
    fetch('/v1/policy', {
      method: 'PATCH', cache: 'no-store',
      headers: Object.assign(authHeaders(), { 'Content-Type': 'application/merge-patch+json', 'If-Match': pol.etag }),
      body: JSON.stringify(patch)
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (b) {
        if (r.ok) {
          showPolicy({ policy: b, etag: r.headers.get('ETag') || '' });
          say($('#policy-status'), 'overview.policy_saved');
          loadRoster();
          return;
        }
        b = b || {};
        if (r.status === 401) { unauthorized(new Error(b.error || '')); return; }
        if (r.status === 412) { showConflict(); return; }
        if (b.field) { showFieldError(b); return; }
        say($('#policy-error'), 'overview.not_saved', { error: b.error || t('common.http_status', { status: r.status }) });
      });
    }).catch(function () {
      say($('#policy-error'), 'common.unreachable');
    }).then(function () { $('#policy-save').disabled = false; });
  });

  // Keep my edits: the current policy with the fields I changed (from
  // what I had loaded) set as I left them; the coordinator checks and
  // saves again.
  $('#policy-rebase').addEventListener('click', function () {
    if (!pol.theirs) { return; }
    var mine = readForm().value;
    var changed = changedFields(mine);
    var now = norm(pol.theirs.policy);
    var merged = norm(pol.theirs.policy);
    changed.forEach(function (k) { merged[k] = mine[k]; });
    pol.base = now;
    pol.etag = pol.theirs.etag;
    hideConflict();
    clearPolicyErrors();
    fillForm(merged);
    say($('#policy-status'), 'overview.pf_rebased');
  });
  $('#policy-discard').addEventListener('click', function () { loadPolicy('overview.policy_reloaded'); });
  $('#policy-reload').addEventListener('click', function () {
    if (policyDirty() && !window.confirm(t('overview.pf_reload_confirm'))) { return; }
    loadPolicy('overview.policy_reloaded');
  });

  // ---- start ----
  I.info.then(function (info) {
    if (info && info.name) { $('#centre-name').textContent = info.name; }
    if (info && info.centre && !observer) { observer = info.centre; }
  });
  var saved = sessionStorage.getItem(KEY);
  if (saved) {
    token = saved;
    loadRoster();
    start(null);
  } else {
    // A supervisor's or coordinator's session, if the console's login
    // left one; else the token form.
    api('GET', '/v1/roster').then(start).catch(function (err) {
      if (err.status === 403) { showTokenForm('common.server_error', { error: err.message }); }
      $('#token').focus();
    });
  }
})();
