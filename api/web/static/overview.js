// helpmesh federation overview for centre staff and coordinators. Plain
// JavaScript, no inline script (CSP). The admin token lives only in this
// tab's sessionStorage and is sent as Authorization: Bearer. Every text goes
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
  var policyDirty = false;
  var lastRoster = null;
  window.helpmeshOverviewLoadedAt = Date.now();

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { if (k === 'class') { e.className = attrs[k]; } else { e.setAttribute(k, attrs[k]); } }); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  // say shows t(key, vars) in el, through language switches; no key clears el.
  function say(el, key, vars) {
    if (!key) {
      el.removeAttribute('data-i18n');
      el.removeAttribute('data-i18n-vars');
      el.textContent = '';
      return;
    }
    I.set(el, key, vars);
  }
  function status(key, vars) { say($('#status'), key, vars); }
  // failed shows err (from api) in el with key, the server's words as {error}.
  function failed(el, key, err, vars) {
    var v = vars || {};
    v.error = err.message;
    say(el, key, v);
  }

  function api(method, path, body) {
    var opts = { method: method, headers: { Authorization: 'Bearer ' + token }, credentials: 'same-origin' };
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
    $('#forget-token').hidden = false;
    if (roster) { renderRoster(roster); }
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
    fetch('/v1/federation/events', { headers: { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' }, signal: ctl.signal, cache: 'no-store' })
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
      if (chat && chat.oldest_wait_millis) { var d = fmtSeconds(chat.oldest_wait_millis / 1000); say(ow, d.key, d.vars); } else { plain(ow, '–'); }
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
      var chans = el('td');
      (v.channels || []).forEach(function (ch, i) {
        if (i) { chans.appendChild(document.createTextNode(', ')); }
        chans.appendChild(ch === 'chat' || ch === 'phone' ? I.set(el('span'), 'common.channel_' + ch) : el('span', null, ch));
      });
      row.appendChild(chans);
      row.appendChild(el('td', null, String(v.capacity)));
      var role = v.role || 'volunteer';
      row.appendChild(role === 'volunteer' || role === 'supervisor' ? I.set(el('td'), 'common.role_' + role) : el('td', null, role));
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

  $('#policy').addEventListener('input', function () { policyDirty = true; });
  $('#policy-reload').addEventListener('click', function () {
    policyDirty = false;
    say($('#policy-error'));
    loadRoster().then(function () { say($('#policy-status'), 'overview.policy_reloaded'); });
  });
  $('#policy-save').addEventListener('click', function () {
    var text = $('#policy').value;
    say($('#policy-error'));
    say($('#policy-status'));
    try { JSON.parse(text); } catch (e) {
      say($('#policy-error'), 'overview.policy_bad_json', { error: e.message });
      $('#policy').focus();
      return;
    }
    $('#policy-save').disabled = true;
    api('PUT', '/v1/policy', text).then(function (p) {
      policyDirty = false;
      $('#policy').value = JSON.stringify(p, null, 2);
      say($('#policy-status'), 'overview.policy_saved');
    }).catch(function (err) {
      if (err.status === 401) { unauthorized(err); return; }
      failed($('#policy-error'), 'overview.not_saved', err);
    }).then(function () { $('#policy-save').disabled = false; });
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
    $('#token').focus();
  }
})();
