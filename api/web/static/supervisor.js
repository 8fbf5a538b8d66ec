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
          var li = el('li', { 'data-lasted': String(c.lasted_seconds), 'data-support': c.support || '' });
          if (c.from_centre) {
            I.set(li, 'supervisor.conversation_from', { channel: channel(c.channel), lasted: clock(c.lasted_seconds), centre: c.from_centre });
          } else {
            I.set(li, 'supervisor.conversation', { channel: channel(c.channel), lasted: clock(c.lasted_seconds) });
          }
          if (c.support) {
            li.appendChild(document.createTextNode(' '));
            li.appendChild(I.set(el('span', { class: 'badge support-' + c.support }), 'supervisor.desk_support_' + c.support));
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

  // ---- support requests and reading along ----
  var seats = {};
  var noteSeq = 0;

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { status('supervisor.not_connected'); return false; }
    ws.send(JSON.stringify(frame));
    return true;
  }

  function alertVars(f) {
    return { volunteer: f.volunteer, centre: f.centre || '', language: f.language, reason: { t: 'supervisor.reason_' + f.reason } };
  }

  function updateAlerts() {
    $('#no-alerts').hidden = $('#alerts li') !== null;
  }

  function onAsked(f) {
    if ($('#alerts li[data-support="' + CSS.escape(f.support) + '"]')) { return; }
    var li = el('li', { class: 'alert', 'data-support': f.support, 'data-reason': f.reason });
    li.appendChild(I.set(el('span', { class: 'alert-what' }), f.centre ? 'supervisor.alert_from' : 'supervisor.alert', alertVars(f)));
    var take = I.set(el('button', { type: 'button', class: 'take' }), 'supervisor.take');
    take.addEventListener('click', function () {
      take.disabled = true;
      if (!send({ type: 'take', support: f.support })) { take.disabled = false; }
    });
    li.appendChild(take);
    $('#alerts').appendChild(li);
    updateAlerts();
    status(f.centre ? 'supervisor.alert_from' : 'supervisor.alert', alertVars(f));
  }

  function dropAlert(id) {
    var li = $('#alerts li[data-support="' + CSS.escape(id) + '"]');
    if (li) { li.remove(); }
    updateAlerts();
  }

  function onTaken(f) {
    dropAlert(f.support);
    if (seats[f.support]) { return; }
    var box = el('section', { class: 'seat card', 'data-support': f.support, 'data-state': 'open' });
    box.appendChild(I.set(el('h3'), f.centre ? 'supervisor.seat_title_from' : 'supervisor.seat_title', alertVars(f)));
    var log = I.setAttr(el('div', { class: 'messages', role: 'log', 'aria-live': 'polite', tabindex: '0' }), 'aria-label', 'supervisor.seat_log_label');
    box.appendChild(log);
    var form = el('form', { class: 'whisper-form' });
    var id = 'whisper-' + f.support;
    form.appendChild(I.set(el('label', { for: id }), 'supervisor.whisper_label', alertVars(f)));
    var ta = el('textarea', { id: id, class: 'whisper-text', rows: '2', maxlength: '2000' });
    form.appendChild(ta);
    var sendB = I.set(el('button', { type: 'submit', class: 'whisper-send' }), 'supervisor.whisper_send');
    form.appendChild(sendB);
    box.appendChild(form);
    var leave = I.set(el('button', { type: 'button', class: 'leave' }), 'supervisor.leave');
    box.appendChild(leave);
    var seat = { el: box, log: log, ta: ta, send: sendB, leave: leave };
    seats[f.support] = seat;
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var text = ta.value.trim();
      if (!text) { return; }
      var nid = 'n' + (++noteSeq);
      if (!send({ type: 'whisper', support: f.support, id: nid, text: text })) { return; }
      ta.value = '';
      var p = el('p', { class: 'msg whisper', 'data-id': nid });
      p.appendChild(I.set(el('span', { class: 'visually-hidden' }), 'supervisor.from_you'));
      p.appendChild(document.createTextNode(' ' + text));
      addLine(seat, p);
    });
    leave.addEventListener('click', function () { send({ type: 'leave', support: f.support }); });
    $('#seats').appendChild(box);
    seatNote(seat, 'supervisor.seat_started', alertVars(f));
    ta.focus();
  }

  function addLine(seat, p) {
    seat.log.appendChild(p);
    seat.log.scrollTop = seat.log.scrollHeight;
  }

  function seatNote(seat, key, vars) {
    addLine(seat, I.set(el('p', { class: 'msg note' }), key, vars));
  }

  function onRead(f) {
    var seat = seats[f.support];
    if (!seat) { return; }
    if (f.kind === 'message') {
      var who = f.by === 'visitor' ? 'visitor' : 'volunteer';
      var p = el('p', { class: 'msg ' + who, 'data-id': String(f.id || '') });
      p.appendChild(I.set(el('span', { class: 'who' }), 'supervisor.said_by_' + who));
      p.appendChild(document.createTextNode(' ' + String(f.text || '')));
      addLine(seat, p);
    } else if (f.kind === 'delivered') {
      var w = seat.log.querySelector('.whisper[data-id="' + CSS.escape(String(f.id)) + '"]');
      if (w) { w.classList.add('delivered'); }
    } else if (f.kind === 'ended') {
      seatNote(seat, 'supervisor.conversation_ended');
    }
  }

  function onSeatEnded(f) {
    var seat = seats[f.support];
    if (!seat) { return; }
    delete seats[f.support];
    seat.el.setAttribute('data-state', 'ended');
    seat.ta.disabled = true;
    seat.send.disabled = true;
    seat.leave.hidden = true;
    seatNote(seat, 'supervisor.seat_ended', { reason: f.reason || '' });
    var close = I.set(el('button', { type: 'button', class: 'close-seat' }), 'supervisor.close_seat');
    close.addEventListener('click', function () { seat.el.remove(); });
    seat.el.appendChild(close);
  }

  // clearSupport forgets the alerts and seats of a console that is off
  // duty or lost its socket: the server sends no withdrawal to either.
  function clearSupport() {
    $('#alerts').textContent = '';
    Object.keys(seats).forEach(function (id) { onSeatEnded({ support: id, reason: I.t('supervisor.seat_gone') }); });
    updateAlerts();
  }

  function onFrame(f) {
    if (f.type === 'support_asked') { onAsked(f); return; }
    if (f.type === 'support_taken') { onTaken(f); return; }
    if (f.type === 'support_withdrawn') { dropAlert(f.support); return; }
    if (f.type === 'read') { onRead(f); return; }
    if (f.type === 'support_ended') { onSeatEnded(f); return; }
    if (f.type === 'desk') {
      $('#view').hidden = false;
      $('#need-login').hidden = true;
      renderDuty(f.on_duty);
      if (!f.on_duty) { clearSupport(); }
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
    clearSupport();
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
