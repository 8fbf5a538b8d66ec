// The visitor chat page. Plain JavaScript, no build step, nothing from other
// origins. The page stores nothing: no cookies, no localStorage, no
// sessionStorage. The transcript lives only in this page's memory and DOM.
// Every visible text comes from the catalogue /i18n/<lang>.json: elements
// carry data-i18n="key" (their text) or data-i18n-attr="attr:key;attr:key".
//
// Catalogues are embedded in the binary (api/web/i18n); a centre adds or
// overrides one in <data dir>/i18n/<lang>.json (docs/operations.md,
// Languages). The languages on offer come from the server's manifest
// /i18n/languages.json, so an added catalogue appears in #lang.
// Emergency numbers show their name in the page's language (names[lang]),
// else their name; age groups and topics their catalogue label, else a
// readable form of their id.
(function () {
  'use strict';

  var LANGS = ['nb', 'nn', 'en', 'fr', 'de']; // until the manifest is in
  var $ = function (id) { return document.getElementById(id); };

  var cat = {};           // the current catalogue
  var lang = 'nb';        // the page's language
  var info = null;        // GET /v1/info
  var exitURL = 'about:blank';
  var ws = null;
  var phase = 'pre';      // pre | connecting | queued | connected | ended
  var alias = '';
  var status = null;      // {key, params} so a language switch re-renders it
  var notice = null;      // 'closed' | 'busy' | 'full' | null
  var waitKind = '';      // the last queued frame's wait (docs/api.md)
  var urgent = false;     // the visitor's urgent choice for this chat
  var movedBack = false;  // an urgent contact came in ahead while queued
  var queuedAt = 0;       // the last place in the queue the page was told
  var pending = [];       // visitor messages written before a volunteer joined
  var nextID = 1;
  var lastTyping = 0;
  var typingTimer = 0;
  var pollTimer = 0;
  var firstPoll = 0;
  var lastEscape = 0;
  // Entry failover (docs/api.md, "Entry points"): other centres' public
  // URLs from /v1/info, kept in memory only and refreshed while idle. When
  // this centre refuses a chat (draining, not ready, queue full) or cannot
  // be reached, the chat starts at the next of them; the visitor only waits.
  var entryPoints = [];
  var attempts = [];      // where this chat start may still go
  var lastRefusal = '';   // the last refusal's code, for the final notice
  // Resumed conversations (docs/api.md, "Resuming a conversation"). All in
  // memory only: never stored, never logged.
  var resume = null;      // {url, secret} from connected: the volunteer's centre, one use
  var ticket = '';        // from connected (a local conversation): front of the queue elsewhere
  var received = 0;       // volunteer messages shown since the last connected frame
  var unconfirmed = [];   // own messages sent but not yet delivered, in order
  var down = [];          // centres this chat lost: a new start goes elsewhere
  var BEAT_DEAD_MS = 3000; // a socket with beats and then none for this long is dead
  var RESUME_MS = 5000;   // the volunteer's centre has this long to say resumed

  // setPhase records where the chat is (pre, connecting, queued, connected,
  // reconnecting: resuming at the volunteer's centre, ended); data-phase on
  // <body> lets styles and tests follow it.
  function setPhase(p) {
    phase = p;
    document.body.setAttribute('data-phase', p);
  }

  // ---- i18n ----

  // readable is an id (a policy's topic, an age group) as words, for a
  // catalogue that has no label for it.
  function readable(id) {
    var s = String(id).replace(/^(\d+)-(\d+)$/, '$1–$2').replace(/[-_]+/g, ' ').trim();
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  function t(key, params) {
    var s = key;
    if (Object.prototype.hasOwnProperty.call(cat, key)) s = cat[key];
    else if (/^(age|topic)\./.test(key)) s = readable(key.slice(key.indexOf('.') + 1));
    if (params) {
      s = s.replace(/\{(\w+)\}/g, function (m, name) {
        return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : m;
      });
    }
    return s;
  }

  // i18nEl marks el as showing catalogue key, and shows it.
  function i18nEl(el, key) {
    el.setAttribute('data-i18n', key);
    el.textContent = t(key);
    return el;
  }

  function applyCatalogue() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach(function (el) {
      el.textContent = t(el.getAttribute('data-i18n'));
    });
    document.querySelectorAll('[data-i18n-attr]').forEach(function (el) {
      el.getAttribute('data-i18n-attr').split(';').forEach(function (pair) {
        var i = pair.indexOf(':');
        if (i > 0) el.setAttribute(pair.slice(0, i).trim(), t(pair.slice(i + 1).trim()));
      });
    });
    renderStatus();
    renderNotice();
    renderUrgentHelp();
    document.documentElement.setAttribute('data-lang-loaded', lang);
  }

  function loadLanguage(l) {
    return fetch('/i18n/' + l + '.json', { credentials: 'omit', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (c) { cat = c; lang = l; $('lang').value = l; applyCatalogue(); });
  }

  // loadLanguages fills #lang from the server's manifest (the embedded
  // catalogues and the centre's own); without it the page keeps the five.
  function loadLanguages() {
    return fetch('/i18n/languages.json', { credentials: 'omit', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (m) {
        var list = (m && m.visitor) || [];
        if (!list.length) return;
        LANGS = list.map(function (l) { return l.code; });
        var sel = $('lang');
        sel.replaceChildren();
        list.forEach(function (l) {
          var o = document.createElement('option');
          o.value = l.code;
          o.lang = l.code;
          o.textContent = l.name || l.code;
          sel.appendChild(o);
        });
        sel.value = lang;
      })
      .catch(function () { /* the five in chat.html stay */ });
  }

  // The page's first language: ?lang= (the widget passes the host page's
  // language), else the browser's preferences, else nb.
  function browserLanguage() {
    var asked = new URLSearchParams(location.search).get('lang');
    if (asked && LANGS.indexOf(asked) >= 0) return asked;
    var prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < prefs.length; i++) {
      var p = String(prefs[i]).toLowerCase();
      var base = p.split('-')[0];
      if (base === 'no') return 'nb';
      if (p === 'nb' || p.indexOf('nb-') === 0) return 'nb';
      if (LANGS.indexOf(base) >= 0) return base;
    }
    return 'nb';
  }

  // ---- status and notices ----

  function setStatus(key, params) {
    status = key ? { key: key, params: params || null } : null;
    renderStatus();
  }

  function renderStatus() {
    var el = $('status');
    if (!status) { el.textContent = ''; return; }
    var p = status.params ? Object.assign({}, status.params) : null;
    if (p && typeof p.waitKind === 'string') p.wait = waitText(p.waitKind, p.waitMinutes);
    // Honest about a place that grew: someone urgent came in ahead.
    el.textContent = (movedBack && phase === 'queued' ? t(movedBack === 'returning' ? 'status_moved_back_returning' : 'status_moved_back') + ' ' : '') + t(status.key, p);
  }

  // waitText words a queued frame's wait; a kind this page does not know
  // is the cautious "several minutes", never a number.
  function waitText(kind, minutes) {
    var n = Number(minutes) > 0 ? Math.round(Number(minutes)) : 0;
    switch (kind) {
      case 'free_now': return t('wait_under_minute');
      case 'minutes': if (n === 1) return t('wait_one_minute'); if (n > 1) return t('wait_minutes', { minutes: n }); break;
      case 'long': if (n > 0) return t('wait_long', { minutes: n }); break;
    }
    return t('wait_several');
  }

  // queuedNotice: nobody is free for the visitor unless the wait is
  // free_now; then the page says so, with the emergency numbers.
  function queuedNotice() {
    return waitKind && waitKind !== 'free_now' ? 'busy' : null;
  }

  function setNotice(kind) {
    notice = kind;
    renderNotice();
  }

  function renderNotice() {
    var box = $('notice');
    if (!notice || !info) { box.hidden = true; return; }
    $('notice-text').textContent = notice === 'closed' ? t('notice_closed') : notice === 'full' ? t('notice_full') :
      notice === 'unavailable' ? t('notice_unavailable') : t('notice_busy');
    fillEmergency($('emergency'));
    box.hidden = false;
  }

  // fillEmergency lists the policy's emergency numbers as tel: links.
  function fillEmergency(ul) {
    ul.replaceChildren();
    ((info && info.emergency_numbers) || []).forEach(function (e) {
      var li = document.createElement('li');
      var a = document.createElement('a');
      a.href = 'tel:' + String(e.number).replace(/[^0-9+]/g, '');
      a.textContent = ((e.names && e.names[lang]) || e.name) + ': ' + e.number;
      li.appendChild(a);
      ul.appendChild(li);
    });
    return ul.children.length > 0;
  }

  // renderUrgentHelp: the urgent choice's help names the emergency
  // numbers when the policy has them, else the local emergency number.
  function renderUrgentHelp() {
    var any = fillEmergency($('urgent-emergency'));
    i18nEl($('urgent-help-text'), any ? 'urgent_help' : 'urgent_help_no_numbers');
  }

  // chatLanguage is the language a chat starts in: the visitor's choice,
  // even before its catalogue has arrived, if the helpline serves it.
  function chatLanguage() {
    var l = LANGS.indexOf($('lang').value) >= 0 ? $('lang').value : lang;
    if (info && info.languages && info.languages.length && info.languages.indexOf(lang) < 0) l = info.languages[0];
    return l;
  }

  function loadInfo() {
    return fetch('/v1/info?lang=' + encodeURIComponent(chatLanguage()), { credentials: 'omit', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (i) {
        info = i;
        renderUrgentHelp();
        if (Array.isArray(i.entry_points)) {
          entryPoints = i.entry_points.filter(function (u) { return typeof u === 'string' && /^https?:\/\/[^\/?#]+$/.test(u); });
        }
        if (typeof i.quick_exit_url === 'string' && /^(https?:\/\/|about:blank$)/.test(i.quick_exit_url)) {
          exitURL = i.quick_exit_url;
        }
        if (!i.open) setNotice('closed');
        else if (phase === 'queued') setNotice(queuedNotice());
        else setNotice(null);
      })
      .catch(function () { /* the chat works without it */ });
  }

  function fillAgeGroups() {
    var sel = $('age-group');
    sel.replaceChildren();
    var none = document.createElement('option');
    none.value = '';
    sel.appendChild(i18nEl(none, 'age.unknown'));
    var groups = (info && info.age_groups) || [];
    groups.forEach(function (g) {
      if (g === 'unknown') return;
      var o = document.createElement('option');
      o.value = g;
      sel.appendChild(i18nEl(o, 'age.' + g));
    });
  }

  // ---- the transcript ----

  // addMessage shows a message; sender names the volunteer who wrote it
  // while two are in the conversation (a warm transfer), else the alias.
  function addMessage(who, text, sender) {
    var div = document.createElement('div');
    div.className = 'msg ' + who;
    var from = document.createElement('span');
    from.className = 'from';
    if (who === 'visitor') i18nEl(from, 'you');
    else from.textContent = sender || alias;
    var body = document.createElement('p');
    body.className = 'text';
    body.textContent = text;
    div.appendChild(from);
    div.appendChild(body);
    $('messages').appendChild(div);
    div.scrollIntoView({ block: 'end' });
    return div;
  }

  // addNote puts a line from the page itself (why the chat moved) in the
  // transcript.
  function addNote(key) {
    var div = document.createElement('div');
    div.className = 'msg system';
    var body = document.createElement('p');
    body.className = 'text';
    div.appendChild(i18nEl(body, key));
    $('messages').appendChild(div);
    div.scrollIntoView({ block: 'end' });
  }

  function markPending(div, on, key) {
    var old = div.querySelector('.note');
    if (old) old.remove();
    div.classList.toggle('pending', on);
    if (on) {
      var n = document.createElement('span');
      n.className = 'note';
      div.appendChild(i18nEl(n, key || 'pending'));
    }
  }

  // ---- keeping to the centre's pace ----
  // docs/api.md: a visitor may send 10 messages at once, then one every 2 s.
  // The page keeps to that itself, so a visitor who types fast (or wrote a
  // lot while waiting) is never refused: what waits is marked "sending in a
  // moment" and goes out in order.
  var PACE_BURST = 10, PACE_EVERY_MS = 2000;
  var tokens = PACE_BURST, tokensAt = Date.now();
  var outq = [];          // messages to send, in the order they were written
  var pumpTimer = 0;

  function idNumber(m) { return Number(String(m.id).slice(1)) || 0; }

  function queueSend(m) {
    var i = outq.length;
    while (i > 0 && idNumber(outq[i - 1]) > idNumber(m)) i--;
    outq.splice(i, 0, m);
    pump();
  }

  function pump() {
    clearTimeout(pumpTimer);
    pumpTimer = 0;
    if (phase !== 'connected') return;
    var now = Date.now();
    tokens = Math.min(PACE_BURST, tokens + (now - tokensAt) / PACE_EVERY_MS);
    tokensAt = now;
    while (outq.length && tokens >= 1) {
      var m = outq.shift();
      tokens -= 1;
      markPending(m.div, false);
      unconfirmed.push(m);
      send({ type: 'message', id: m.id, text: m.text });
    }
    if (outq.length) {
      outq.forEach(function (w) { markPending(w.div, true, 'sending_soon'); });
      pumpTimer = setTimeout(pump, Math.ceil((1 - tokens) * PACE_EVERY_MS) + 20);
    }
  }

  // slowedDown: the centre refused a message for coming too fast (its clock
  // and ours disagree, or another tab shares the pace). Its word wins: wait
  // as long as it says, then go on in order.
  function slowedDown(id, seconds) {
    var div = document.querySelector('#messages [data-id="' + CSS.escape(String(id)) + '"]');
    if (!div) return;
    confirm(id);
    tokens = 0;
    tokensAt = Date.now() + Math.max(0, (Number(seconds) || 2) * 1000 - PACE_EVERY_MS);
    queueSend({ id: id, text: div.querySelector('.text').textContent, div: div });
  }

  // confirm forgets an own message as unconfirmed: delivered, or refused
  // and queued again.
  function confirm(id) {
    unconfirmed = unconfirmed.filter(function (m) { return m.id !== id; });
  }

  // ---- the socket ----

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  // watch calls onDead once a socket that has sent a beat (the centre sends
  // one every second to a page that asked with resume=1) stays silent for
  // BEAT_DEAD_MS: a centre that died or was cut off without closing. A
  // centre that shows no sign of beating (an older release) is left to
  // close and error.
  function watch(onDead) {
    var w = { last: Date.now(), armed: false, dead: false };
    var timer = setInterval(function () {
      if (w.armed && Date.now() - w.last > BEAT_DEAD_MS) {
        clearInterval(timer);
        w.dead = true;
        onDead();
      }
    }, 250);
    w.frame = function (f) {
      w.last = Date.now();
      // A centre that hands out a resume or a ticket beats too.
      if (f && (f.type === 'beat' || f.type === 'resumed' || (f.type === 'connected' && (f.resume || f.ticket)))) w.armed = true;
    };
    w.stop = function () { clearInterval(timer); };
    return w;
  }

  function wsURL(base, path) {
    return base.replace(/^http/, 'ws') + path;
  }

  function ownOrigin() { return location.protocol + '//' + location.host; }

  function shuffled(list) {
    var a = list.slice();
    for (var i = a.length - 1; i > 0; i--) {
      var j = Math.floor(Math.random() * (i + 1));
      var x = a[i]; a[i] = a[j]; a[j] = x;
    }
    return a;
  }

  function start() {
    if (ws) return;
    var chatLang = chatLanguage();
    urgent = $('urgent').checked;
    movedBack = false;
    setPhase('connecting');
    $('prechat').hidden = true;
    $('chat').hidden = false;
    $('again').hidden = true;
    $('end').hidden = false;
    $('message').disabled = false;
    $('send').disabled = false;
    setStatus('status_connecting');
    setNotice(info && !info.open ? 'closed' : null);
    var own = ownOrigin();
    attempts = [own].concat(shuffled(entryPoints.filter(function (u) { return u !== own; })));
    lastRefusal = '';
    resume = null;
    ticket = '';
    received = 0;
    unconfirmed = [];
    down = [];
    connect(chatLang, '');
    $('message').focus();
  }

  // connect opens the chat socket at the next centre in attempts. Until
  // the centre has queued the chat, a refusal it may not share (draining,
  // not_ready, queue_full), a failed upgrade (a 503 shows as a close) or a
  // lost connection moves on to the next centre: the visitor keeps seeing
  // "connecting", and what they wrote meanwhile stays pending. Only when
  // every centre failed does the page say so, with the emergency numbers.
  // attemptMillis bounds one centre's attempt, to its first frame.
  var attemptMillis = 8000;

  function connect(chatLang, tk) {
    var base = attempts.shift();
    if (!base) {
      giveUp();
      return;
    }
    var queued = false;
    var moveOn = false;
    var sock;
    try {
      sock = new WebSocket(wsURL(base, '/v1/chat?channel=chat&lang=' + encodeURIComponent(chatLang) + '&resume=1' +
        (urgent ? '&urgent=1' : '') + (tk ? '&ticket=' + encodeURIComponent(tk) : '')));
    } catch (e) {
      connect(chatLang, tk); // a URL the browser refuses outright: the next one
      return;
    }
    ws = sock;
    // A centre that stops beating is dead: end this socket as a close would.
    var beats = watch(function () {
      if (ws !== sock) return;
      moveOn = true;
      attemptOver();
      try { sock.close(1000); } catch (e) { /* dead anyway */ }
    });
    // One attempt ends once, by whichever comes first: a close, an error
    // (a socket the page's CSP blocks fires error and never close), or no
    // first frame within attemptMillis (a centre that accepts and hangs).
    var over = false;
    var attemptOver = function () {
      if (over) return;
      over = true;
      clearTimeout(firstFrame);
      sock.onclose();
    };
    var firstFrame = setTimeout(function () {
      if (queued) return;
      moveOn = true;
      try { sock.close(1000); } catch (e) { /* closing anyway */ }
      attemptOver();
    }, attemptMillis);
    sock.onerror = function () {
      if (!queued) attemptOver();
    };
    sock.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      // Beats count even while this socket is parked after a move: it is
      // where the page stays should the resume fail.
      beats.frame(f);
      if (ws !== sock) return;
      clearTimeout(firstFrame);
      if (f.type === 'move') {
        // This centre drains for a restart or lost the volunteer's: go on
        // at the volunteer's. This socket waits meanwhile: should the
        // resume fail, the page stays here, at the front of the queue.
        if (resume && phase === 'connected') {
          ws = null;
          resumeAt(base, { sock: sock, beats: beats });
        }
        return;
      }
      if (!queued && f.type === 'error' && (f.code === 'draining' || f.code === 'not_ready' || f.code === 'queue_full')) {
        lastRefusal = f.code;
        if (f.code === 'queue_full' && f.emergency_numbers && f.emergency_numbers.length) {
          if (!info) info = { open: true, languages: [], emergency_numbers: [] };
          info.emergency_numbers = f.emergency_numbers;
        }
        moveOn = true;
        try { sock.close(1000); } catch (e) { /* closing anyway */ }
        return;
      }
      if (f.type === 'queued' || f.type === 'connected') queued = true;
      onFrame(f);
    };
    sock.onclose = function () {
      over = true;
      clearTimeout(firstFrame);
      beats.stop();
      if (ws !== sock) return;
      ws = null;
      if (phase === 'connecting' && (moveOn || !queued)) {
        connect(chatLang, tk);
        return;
      }
      stopPolling();
      // Closed without ended or closed: the centre died, was cut off or
      // went away.
      if (phase !== 'ended') centreLost(base);
    };
  }

  // centreLost: the centre the chat went through is gone. A conversation
  // with a volunteer at another centre goes on there (resumeAt); any other
  // starts anew at another centre, with the ticket if there is one.
  function centreLost(base) {
    stopPolling();
    hideTyping();
    if (phase === 'connected' && resume) {
      if (down.indexOf(base) < 0) down.push(base); // not tried again in this chat
      resumeAt(base);
      return;
    }
    if (phase === 'connected') restartElsewhere(base, ticket ? 'status_centre_offline_first' : 'status_centre_offline');
    else restartElsewhere(base, 'status_reconnecting_queue');
  }

  // resumeAt continues the conversation at the volunteer's centre with the
  // one-time secret: the same transcript, the volunteer's messages this
  // page has not seen, and the visitor's that were never delivered.
  function resumeAt(lostBase, parked) {
    var r = resume;
    resume = null; // one use, whatever happens
    setPhase('reconnecting');
    setStatus('status_reconnecting');
    var sock;
    var resumed = false;
    var failed = false;
    var timer = 0;
    var beats = null;
    // fail: refused (the centre is there, and may start a new chat) or
    // unreachable (it is not tried again in this chat).
    var fail = function (refused) {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      if (beats) beats.stop();
      if (ws === sock) ws = null;
      try { if (sock) sock.close(1000); } catch (e) { /* gone already */ }
      if (phase !== 'reconnecting') { leave(parked); return; } // the visitor ended it meanwhile
      if (refused !== true) down.push(r.url);
      if (parked && parked.sock.readyState === WebSocket.OPEN && !parked.beats.dead) {
        // Told to move, and the centre that told us is still here.
        ws = parked.sock;
        send({ type: 'stay' });
        setPhase('queued');
        setStatus('status_requeued');
        unconfirmed.splice(0).forEach(function (m) { markPending(m.div, true, 'not_delivered'); });
        outq.splice(0).forEach(function (m) { markPending(m.div, true); pending.push(m); });
        startPolling();
        return;
      }
      leave(parked);
      restartElsewhere(lostBase, ticket ? 'status_centre_offline_first' : 'status_centre_offline');
    };
    try {
      sock = new WebSocket(wsURL(r.url, '/v1/chat/resume'));
    } catch (e) {
      fail();
      return;
    }
    ws = sock;
    timer = setTimeout(fail, RESUME_MS);
    beats = watch(function () {
      if (!resumed) { fail(); return; }
      if (ws !== sock) return;
      ws = null;
      try { sock.close(1000); } catch (e) { /* dead anyway */ }
      if (phase !== 'ended') centreLost(r.url);
    });
    sock.onopen = function () {
      if (ws !== sock) return;
      sock.send(JSON.stringify({ type: 'resume', secret: r.secret, received: received }));
    };
    sock.onerror = function () { if (!resumed) fail(); };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      beats.frame(f);
      if (!resumed) {
        if (f.type === 'beat') return;
        if (f.type !== 'resumed') { fail(f.type === 'error'); return; } // resume_refused, or anything else
        resumed = true;
        clearTimeout(timer);
        leave(parked);
        onResumed(f);
        return;
      }
      if (f.type === 'move') return; // no second resume: its close starts anew
      if (f.type === 'closed') {
        // The volunteer's centre closed the conversation it held for us
        // (its volunteer's console went, or it shut down): nobody owns a
        // place for this visitor any more, so start anew elsewhere, not end.
        beats.stop();
        ws = null;
        try { sock.close(1000); } catch (e) { /* closing anyway */ }
        restartElsewhere(r.url, 'status_centre_offline');
        return;
      }
      onFrame(f);
    };
    sock.onclose = function () {
      if (!resumed) { fail(); return; }
      beats.stop();
      if (ws !== sock) return;
      ws = null;
      if (phase !== 'ended') centreLost(r.url);
    };
  }

  // leave closes the socket of a centre the page was told to move from.
  function leave(parked) {
    if (!parked) return;
    parked.beats.stop();
    try { parked.sock.close(1000); } catch (e) { /* gone already */ }
  }

  // onResumed: the conversation goes on. Own messages never delivered go
  // again with the same ids (the centre passes each on once), then what
  // was written meanwhile, in order.
  function onResumed(f) {
    setPhase('connected');
    if (f.alias) alias = String(f.alias);
    setStatus('status_connected', { alias: alias });
    unconfirmed.splice(0).concat(pending.splice(0)).forEach(queueSend);
    pump();
  }

  // restartElsewhere starts a new chat at another centre, keeping the
  // transcript: what was sent and never confirmed is marked so, what was
  // never sent waits for the next volunteer. The visitor is told why.
  function restartElsewhere(lostBase, key) {
    if (lostBase) down.push(lostBase);
    var tk = ticket;
    resume = null;
    ticket = '';
    received = 0;
    unconfirmed.splice(0).forEach(function (m) { markPending(m.div, true, 'not_delivered'); });
    outq.splice(0).forEach(function (m) { markPending(m.div, true); pending.push(m); });
    clearTimeout(pumpTimer);
    pumpTimer = 0;
    hideTyping();
    stopPolling();
    setPhase('connecting');
    setStatus(key);
    addNote(key);
    var own = ownOrigin();
    var all = [own].concat(shuffled(entryPoints.filter(function (u) { return u !== own; })));
    attempts = all.filter(function (u) { return down.indexOf(u) < 0; });
    lastRefusal = '';
    connect(chatLanguage(), tk);
  }

  // giveUp: no centre could start the chat.
  function giveUp() {
    finish();
    if (!info) info = { open: true, languages: [], emergency_numbers: [] };
    if (lastRefusal === 'queue_full') {
      setNotice('full');
      setStatus('status_queue_full');
    } else {
      setNotice('unavailable');
      setStatus('status_not_open');
    }
  }

  function onFrame(f) {
    switch (f.type) {
      case 'queued':
        setPhase('queued');
        // The explanation stays while the place it explains does; a
        // better place ends it.
        if (f.moved_back === true) movedBack = f.moved_back_for === 'returning' ? 'returning' : 'urgent';
        else if (typeof f.position === 'number' && f.position < queuedAt) movedBack = false;
        if (typeof f.position === 'number') queuedAt = f.position;
        waitKind = String(f.wait || '');
        if (f.emergency_numbers && f.emergency_numbers.length) {
          if (!info) info = { open: true, languages: [], emergency_numbers: [] };
          info.emergency_numbers = f.emergency_numbers;
        }
        if (waitKind === 'no_one_on_duty') setStatus('status_queued_place', { position: f.position });
        else setStatus('status_queued', { position: f.position, waitKind: waitKind, waitMinutes: f.wait_minutes });
        if (notice !== 'closed') setNotice(queuedNotice());
        startPolling();
        break;
      case 'connected':
        setPhase('connected');
        movedBack = false;
        alias = String(f.alias || '');
        received = 0;
        resume = null;
        if (f.resume && typeof f.resume.url === 'string' && /^https?:\/\/[^\/?#]+$/.test(f.resume.url) &&
            typeof f.resume.secret === 'string' && f.resume.secret) {
          resume = { url: f.resume.url, secret: f.resume.secret };
        }
        ticket = typeof f.ticket === 'string' ? f.ticket : '';
        stopPolling();
        setNotice(info && !info.open ? 'closed' : null);
        setStatus('status_connected', { alias: alias });
        pending.splice(0).forEach(queueSend);
        pump();
        break;
      case 'message':
        hideTyping();
        received++;
        addMessage('volunteer', String(f.text || ''), f.alias ? String(f.alias) : '');
        break;
      case 'transferred':
        // The conversation goes on, on this socket, with another volunteer
        // (a transfer). A resume secret was for the old one's centre.
        alias = String(f.alias || '');
        resume = null;
        setStatus('status_transferred', { alias: alias });
        var tn = document.createElement('div');
        tn.className = 'msg system transferred';
        var tp = document.createElement('p');
        tp.className = 'text';
        tp.textContent = t('status_transferred', { alias: alias });
        tn.appendChild(tp);
        $('messages').appendChild(tn);
        tn.scrollIntoView({ block: 'end' });
        break;
      case 'typing':
        showTyping();
        break;
      case 'delivered':
        confirm(String(f.id));
        var d = document.querySelector('#messages [data-id="' + CSS.escape(String(f.id)) + '"]');
        if (d) { d.classList.add('delivered'); markPending(d, false); }
        break;
      case 'ended':
        finish();
        if (f.by === 'visitor') setStatus('status_ended_visitor');
        else setStatus('status_ended_volunteer');
        break;
      case 'supervised':
        // The centre's policy tells the visitor when a supervisor reads
        // along; nothing of the supervisor is shown.
        addNote('note_supervised');
        break;
      case 'stayed':
        // The resume after a drain's move failed and this centre still
        // relays the conversation: it goes on here, with the same volunteer.
        setPhase('connected');
        stopPolling();
        setStatus('status_connected', { alias: alias });
        pending.splice(0).forEach(queueSend);
        pump();
        break;
      case 'requeued':
        resume = null; // the volunteer's centre is gone
        setPhase('queued');
        waitKind = '';
        hideTyping();
        if (f.undelivered > 0) setStatus('status_requeued_undelivered', { count: f.undelivered });
        else setStatus('status_requeued');
        startPolling();
        break;
      case 'error':
        if (f.code === 'slow_down' && f.id) {
          slowedDown(f.id, f.retry_after_seconds);
        } else if (f.code === 'queue_full') {
          // An honest answer: no place in a queue nobody reaches, and where
          // to turn now.
          finish();
          if (!info) info = { open: true, languages: [], emergency_numbers: [] };
          if (f.emergency_numbers && f.emergency_numbers.length) info.emergency_numbers = f.emergency_numbers;
          setNotice('full');
          setStatus('status_queue_full');
        } else if (f.code === 'not_connected' && f.id) {
          var div = document.querySelector('#messages [data-id="' + CSS.escape(String(f.id)) + '"]');
          if (div) {
            confirm(String(f.id));
            markPending(div, true);
            pending.push({ id: f.id, text: div.querySelector('.text').textContent, div: div });
          }
        } else if (phase === 'connecting') {
          setStatus('status_not_open');
        } else {
          setStatus('status_error');
        }
        break;
      case 'closed':
        finish();
        setStatus('status_closed');
        break;
    }
  }

  function finish() {
    setPhase('ended');
    resume = null;
    ticket = '';
    unconfirmed = [];
    hideTyping();
    stopPolling();
    pending = [];
    outq = [];
    clearTimeout(pumpTimer);
    $('message').disabled = true;
    $('send').disabled = true;
    $('end').hidden = true;
    $('again').hidden = false;
    var f = document.activeElement;
    if (!f || f === document.body || f === $('end') || f === $('message') || f === $('send')) $('again').focus();
    if (ws) { try { ws.close(1000); } catch (e) { /* gone already */ } }
  }

  function showTyping() {
    $('typing').hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, 5000);
  }

  function hideTyping() {
    clearTimeout(typingTimer);
    $('typing').hidden = true;
  }

  // While queued, /v1/info is checked every 10 s (the first time after 5 s)
  // for the open hours. Whether anyone is free for this visitor comes with
  // every queued frame, which the centre sends again when it changes.
  function startPolling() {
    if (pollTimer) return;
    firstPoll = setTimeout(loadInfo, 5000);
    pollTimer = setInterval(loadInfo, 10000);
  }

  function stopPolling() {
    clearTimeout(firstPoll);
    clearInterval(pollTimer);
    pollTimer = 0;
  }

  function submitMessage() {
    var box = $('message');
    var text = box.value.trim();
    if (!text || phase === 'ended' || phase === 'pre') return;
    var id = 'c' + (nextID++);
    var div = addMessage('visitor', text);
    div.setAttribute('data-id', id);
    box.value = '';
    if (phase === 'connected') {
      queueSend({ id: id, text: text, div: div });
    } else {
      markPending(div, true, phase === 'reconnecting' ? 'sending_soon' : 'pending');
      pending.push({ id: id, text: text, div: div });
    }
  }

  // ---- quick exit ----

  function quickExit() {
    resume = null;
    ticket = '';
    unconfirmed = [];
    try { send({ type: 'end' }); } catch (e) { /* leaving anyway */ }
    try { if (ws) ws.close(1000); } catch (e) { /* leaving anyway */ }
    ws = null;
    pending = [];
    outq = [];
    try { $('messages').replaceChildren(); $('message').value = ''; } catch (e) { /* leaving anyway */ }
    try { sessionStorage.clear(); } catch (e) { /* storage may be blocked */ }
    try { localStorage.clear(); } catch (e) { /* storage may be blocked */ }
    if (window.parent !== window) {
      // Embedded by widget.js: the host page leaves too.
      try { window.parent.postMessage({ type: 'helpmesh:quick-exit', url: exitURL }, '*'); } catch (e) { /* no parent */ }
    }
    location.replace(exitURL);
  }

  // ---- wiring ----

  document.addEventListener('keydown', function (e) {
    if (e.key !== 'Escape') return;
    var now = Date.now();
    if (now - lastEscape < 1000) { quickExit(); return; }
    lastEscape = now;
  });

  function init() {
    $('quick-exit').addEventListener('click', quickExit);
    $('lang').addEventListener('change', function () { loadLanguage(this.value); if (phase === 'pre') loadInfo(); });
    $('prechat').addEventListener('submit', function (e) { e.preventDefault(); start(); });
    $('composer').addEventListener('submit', function (e) { e.preventDefault(); submitMessage(); });
    $('message').addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitMessage(); }
    });
    $('message').addEventListener('input', function () {
      var now = Date.now();
      if (phase === 'connected' && now - lastTyping > 3000) { lastTyping = now; send({ type: 'typing' }); }
    });
    $('end').addEventListener('click', function () {
      if (phase !== 'reconnecting' && ws && ws.readyState === WebSocket.OPEN) send({ type: 'end' });
      else { finish(); setStatus('status_ended_visitor'); }
    });
    $('again').addEventListener('click', function () {
      $('messages').replaceChildren();
      alias = '';
      setPhase('pre');
      setStatus(null);
      setNotice(info && !info.open ? 'closed' : null);
      $('chat').hidden = true;
      $('prechat').hidden = false;
      $('start').focus();
    });
    setPhase('pre');
    fillAgeGroups();
    loadLanguages().then(function () {
      return loadLanguage(browserLanguage()).catch(function () { return loadLanguage('nb'); });
    });
    loadInfo().then(fillAgeGroups);
    // Entry points go stale as centres drain and come back: refresh them
    // while nobody is chatting, so a failover tries centres live now.
    setInterval(function () { if (phase === 'pre' || phase === 'ended') loadInfo(); }, 30000);
    window.addEventListener('pagehide', function () { if (ws) { try { ws.close(1000); } catch (e) { /* leaving */ } } });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
