// helpmesh supervisor console. Plain JavaScript, no build step, no inline
// script (the page's CSP forbids it). Speaks the /v1/supervisor protocol
// (api/supervisor.go, docs/api.md "The supervisor console"): on_duty in,
// desk snapshots out. Every text goes through the staff pages' catalogue
// helper (static/i18n.js, window.I18N): keys supervisor.* and common.*.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var I = window.I18N;
  var el = I.el;
  var say = I.say;
  var ws = null;
  var opened = false;   // this socket got a frame
  var retry = null;

  function status(key, vars) { say($('#status'), key, vars); }
  function channel(ch) { return ch === 'chat' || ch === 'phone' ? { t: 'common.channel_' + ch } : String(ch); }
  // clock is a duration as h:mm:ss or m:ss, the same in every language.
  function clock(s) {
    s = Math.max(0, Math.floor(s || 0));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    return h > 0 ? h + ':' + pad(m) + ':' + pad(sec) : m + ':' + pad(sec);
  }
  function cell(text, cls) { return el('td', cls ? { class: cls } : null, text); }
  function keyCell(key, vars) { return I.set(el('td'), key, vars); }
  function channelCell(ch) { return ch === 'chat' || ch === 'phone' ? keyCell('common.channel_' + ch) : cell(ch); }

  function renderDuty(on) {
    $('#on-duty').checked = !!on;
    $('#duty-card').classList.toggle('is-on', !!on);
    say($('#duty-state'), on ? 'supervisor.you_on_duty' : 'supervisor.you_off_duty');
  }

  function renderWaiting(list) {
    var body = $('#waiting tbody');
    body.textContent = '';
    list.forEach(function (w) {
      var tr = el('tr', { 'data-channel': w.channel, 'data-language': w.language, 'data-waited': String(w.waited_seconds) });
      tr.appendChild(channelCell(w.channel));
      tr.appendChild(cell(w.language));
      tr.appendChild(cell(clock(w.waited_seconds), 'num'));
      tr.appendChild(keyCell(w.ringing ? 'supervisor.offer_out' : 'supervisor.offer_none'));
      body.appendChild(tr);
    });
    $('#waiting').hidden = list.length === 0;
    $('#no-waiting').hidden = list.length > 0;
  }

  function renderVolunteers(list) {
    var body = $('#volunteers tbody');
    body.textContent = '';
    list.forEach(function (v) {
      var tr = el('tr', { 'data-alias': v.alias, 'data-conversations': String(v.conversations.length) });
      tr.appendChild(cell(v.alias));
      var av = el('td');
      if (v.available.length === 0) {
        I.set(av, 'supervisor.not_available');
      } else {
        // Re-rendered with every snapshot, so a language switch shows within 2 s.
        av.textContent = v.available.map(function (ch) { return I.t('common.channel_' + ch); }).join(', ');
      }
      tr.appendChild(av);
      var convs = el('td');
      if (v.conversations.length === 0) {
        I.set(convs, v.ringing ? 'supervisor.ringing' : 'supervisor.no_conversation');
      } else {
        var ul = el('ul', { class: 'convs' });
        v.conversations.forEach(function (c) {
          var li = el('li', { 'data-lasted': String(c.lasted_seconds) });
          if (c.from_centre) {
            I.set(li, 'supervisor.conversation_from', { channel: channel(c.channel), lasted: clock(c.lasted_seconds), centre: c.from_centre });
          } else {
            I.set(li, 'supervisor.conversation', { channel: channel(c.channel), lasted: clock(c.lasted_seconds) });
          }
          ul.appendChild(li);
        });
        convs.appendChild(ul);
        convs.appendChild(I.set(el('span', { class: 'quiet' }), 'supervisor.load', { n: v.conversations.length, capacity: v.capacity }));
      }
      tr.appendChild(convs);
      tr.appendChild(cell(clock(v.signed_in_seconds), 'num'));
      body.appendChild(tr);
    });
    $('#volunteers').hidden = list.length === 0;
    $('#no-volunteers').hidden = list.length > 0;
  }

  function renderFederation(list, own) {
    var body = $('#federation tbody');
    body.textContent = '';
    list.forEach(function (c) {
      var n = c.supervisors_on_duty;
      var tr = el('tr', { 'data-centre': c.centre, 'data-on-duty': n === null ? '' : String(n) });
      tr.appendChild(c.centre === own ? keyCell('supervisor.own_centre', { name: c.name || c.centre }) : cell(c.name || c.centre));
      var td;
      if (n === null) {
        td = keyCell('supervisor.count_unknown');
      } else if (n === 0) {
        td = keyCell('supervisor.count_none');
        td.className = 'none';
      } else {
        td = keyCell('supervisor.count_on_duty', { n: n });
      }
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  function onFrame(f) {
    if (f.type === 'desk') {
      $('#view').hidden = false;
      $('#need-login').hidden = true;
      renderDuty(f.on_duty);
      renderWaiting(f.waiting || []);
      renderVolunteers(f.volunteers || []);
      renderFederation(f.federation || [], f.centre);
      document.body.setAttribute('data-desk', String(Date.now()));
    } else if (f.type === 'error') {
      status('common.server_error', { error: f.error });
    } else if (f.type === 'closed') {
      status('supervisor.closed', { reason: f.reason });
    }
  }

  function needLogin(key) {
    $('#view').hidden = true;
    $('#need-login').hidden = false;
    say($('#need-login-text'), key);
    status();
  }

  // After a close: an ended session or a refusal shows why; anything else
  // (a restart) is retried.
  function closed() {
    ws = null;
    fetch('/v1/volunteer/session', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status === 401) { needLogin('supervisor.login_help'); return; }
      if (!opened && r.ok) { needLogin('supervisor.not_supervisor'); return; }
      status('supervisor.reconnecting');
      retry = window.setTimeout(connect, 2000);
    }).catch(function () {
      status('supervisor.reconnecting');
      retry = window.setTimeout(connect, 2000);
    });
  }

  function connect() {
    retry = null;
    opened = false;
    var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var sock;
    try { sock = new WebSocket(proto + '//' + location.host + '/v1/supervisor'); } catch (e) { closed(); return; }
    ws = sock;
    sock.onmessage = function (ev) {
      if (!opened) { opened = true; status(); }
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      onFrame(f);
    };
    sock.onclose = function () { if (ws === sock) { closed(); } };
  }

  $('#on-duty').addEventListener('change', function (ev) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      ev.target.checked = !ev.target.checked;
      status('supervisor.not_connected');
      return;
    }
    ws.send(JSON.stringify({ type: 'on_duty', on: ev.target.checked }));
  });

  I.info.then(function (info) {
    if (info && info.name) { $('#centre-name').textContent = info.name; }
  });
  I.ready.then(function () {
    status('supervisor.connecting');
    connect();
  });
  window.addEventListener('beforeunload', function () {
    if (retry) { window.clearTimeout(retry); }
  });
})();
