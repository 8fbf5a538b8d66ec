// helpmesh volunteer console. Plain JavaScript, no build step, no inline
// script (the page's CSP forbids it). Speaks the /v1/console protocol
// described in api/console.go.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var ws = null;
  var policy = { topics: [], age_groups: [] };
  var offers = {};   // contact -> {el, timer, until}
  var chats = {};    // contact -> {el, ...}
  var msgSeq = 0;
  var audio = null;
  var closingOnPurpose = false;
  var CHANNEL_NAMES = { chat: 'chat', phone: 'phone' };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'class') { e.className = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
      });
    }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function status(text) { $('#status').textContent = text; }
  function announce(text) {
    var a = $('#announce');
    a.textContent = '';
    // A fresh text node makes screen readers announce repeated messages too.
    window.setTimeout(function () { a.textContent = text; }, 30);
  }

  // ---- sound: a short two-tone chime, never throws ----
  function unlockAudio() {
    try {
      if (!audio) {
        var AC = window.AudioContext || window.webkitAudioContext;
        if (AC) { audio = new AC(); }
      }
      if (audio && audio.state === 'suspended') { audio.resume().catch(function () {}); }
    } catch (e) { audio = null; }
  }
  function chime() {
    try {
      unlockAudio();
      if (!audio) { return; }
      var t = audio.currentTime;
      [660, 880].forEach(function (f, i) {
        var o = audio.createOscillator();
        var g = audio.createGain();
        o.type = 'sine';
        o.frequency.value = f;
        g.gain.setValueAtTime(0.0001, t + i * 0.18);
        g.gain.exponentialRampToValueAtTime(0.2, t + i * 0.18 + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.18 + 0.16);
        o.connect(g);
        g.connect(audio.destination);
        o.start(t + i * 0.18);
        o.stop(t + i * 0.18 + 0.18);
      });
    } catch (e) { /* sound is a nicety */ }
  }

  // ---- login ----
  function showLogin(message) {
    $('#desk').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = message || '';
    // The next volunteer at this desk gives their own phone.
    $('#phone').value = '';
    $('#phone-error').textContent = '';
    clearDesk();
  }

  function clearDesk() {
    endBrowserCall(sp.contact);
    stopMic();
    Object.keys(offers).forEach(removeOffer);
    Object.keys(chats).forEach(function (c) { stopCallTimer(chats[c]); chats[c].el.remove(); delete chats[c]; });
    updateNoChats();
  }

  function showDesk() {
    $('#login').hidden = true;
    $('#desk').hidden = false;
    $('#logout').hidden = false;
    $('#login-error').textContent = '';
  }

  $('#login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    unlockAudio();
    var id = $('#volunteer').value.trim();
    var pw = $('#password').value;
    if (!id || !pw) { $('#login-error').textContent = 'Enter your volunteer id and password.'; return; }
    $('#login-submit').disabled = true;
    $('#login-error').textContent = '';
    fetch('/v1/volunteer/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ volunteer: id, password: pw })
    }).then(function (r) {
      if (r.status === 204) {
        $('#password').value = '';
        openConsole(true);
        return;
      }
      return r.json().catch(function () { return {}; }).then(function (b) {
        var msg = b.error || ('Login failed (HTTP ' + r.status + ')');
        if (r.status === 429) {
          var after = r.headers.get('Retry-After');
          msg = 'Too many attempts. Try again' + (after ? ' in ' + after + ' seconds.' : ' later.');
        }
        $('#login-error').textContent = msg;
      });
    }).catch(function () {
      $('#login-error').textContent = 'Cannot reach the centre. Check the connection and try again.';
    }).then(function () { $('#login-submit').disabled = false; });
  });

  $('#logout').addEventListener('click', function () {
    closingOnPurpose = true;
    stopReconnecting();
    fetch('/v1/volunteer/logout', { method: 'POST', credentials: 'same-origin' })
      .catch(function () {})
      .then(function () {
        if (ws) { try { ws.close(1000, 'logged out'); } catch (e) { /* ignore */ } }
        ws = null;
        showLogin('');
        status('You are logged out.');
        $('#volunteer').focus();
      });
  });

  // ---- the console socket ----
  // A console that was open and is lost (the centre restarts, as in a
  // rolling upgrade, or the network blinks) reconnects with the same
  // session cookie: sessions survive a restart of the centre. Before each
  // try the page asks whether the session is still live, so an ended one
  // shows the login form at once; it gives up after RECONNECT_FOR_MS.
  var RECONNECT_FOR_MS = 5 * 60 * 1000;
  var reconnect = { since: 0, delay: 0, timer: 0 };

  function stopReconnecting() {
    if (reconnect.timer) { window.clearTimeout(reconnect.timer); }
    reconnect.since = 0;
    reconnect.delay = 0;
    reconnect.timer = 0;
  }

  function lostConnection() {
    // The centre gave the conversations back to their queues; what the
    // desk showed of them is over.
    clearDesk();
    if (!reconnect.since) { reconnect.since = Date.now(); reconnect.delay = 500; }
    if (Date.now() - reconnect.since > RECONNECT_FOR_MS) {
      stopReconnecting();
      showLogin('The connection to the centre was lost. Log in again.');
      status('Disconnected.');
      return;
    }
    status('The connection to the centre was lost. Reconnecting…');
    reconnect.timer = window.setTimeout(tryReconnect, reconnect.delay);
    reconnect.delay = Math.min(reconnect.delay * 2, 5000);
  }

  function tryReconnect() {
    reconnect.timer = 0;
    fetch('/v1/volunteer/session', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status === 200) { openConsole(false, true); return; }
      if (r.status === 401) {
        stopReconnecting();
        showLogin('Your session has ended. Log in again.');
        status('Disconnected.');
        return;
      }
      lostConnection();
    }).catch(lostConnection);
  }

  function openConsole(fromLogin, reconnecting) {
    var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var sock;
    try { sock = new WebSocket(proto + '//' + location.host + '/v1/console'); } catch (e) { showLogin('Cannot open the console.'); return; }
    ws = sock;
    closingOnPurpose = false;
    var opened = false;
    sock.onopen = function () {
      opened = true;
      showDesk();
      if (reconnecting) {
        stopReconnecting();
        status('Reconnected. You are signed in but not available: switch your channels on again.');
        announce('Reconnected to the centre. Switch your channels on again.');
      } else {
        status('Connected. You are signed in but not available until you switch a channel on.');
      }
      if (fromLogin || reconnecting) { $('#available-chat').focus(); }
    };
    sock.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      handle(f);
    };
    sock.onclose = function (ev) {
      if (ws !== sock) { return; }
      ws = null;
      if (closingOnPurpose) { return; }
      if (reconnecting && !opened) { lostConnection(); return; }
      if (!opened) {
        if (fromLogin) { showLogin('The console could not open. Log in again.'); }
        else { showLogin(''); }
        return;
      }
      lostConnection();
    };
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      status('Not connected to the centre.');
      return false;
    }
    ws.send(JSON.stringify(frame));
    return true;
  }

  function handle(f) {
    switch (f.type) {
      case 'policy':
        policy.topics = f.topics || [];
        policy.age_groups = f.age_groups || [];
        break;
      case 'availability': onAvailability(f); break;
      case 'offer': onOffer(f); break;
      case 'offer_withdrawn': onWithdrawn(f); break;
      case 'connected': onConnected(f); break;
      case 'message': onMessage(f); break;
      case 'typing': onTyping(f); break;
      case 'delivered': onDelivered(f); break;
      case 'ended': onEnded(f); break;
      case 'lost': onLost(f); break;
      case 'categorised': onCategorised(f); break;
      case 'closed':
        // A centre that shuts down may be restarting: the socket's close
        // then reconnects (lostConnection). Any other reason is final.
        if (f.reason === 'the centre is shutting down') { status('The centre is restarting…'); break; }
        closingOnPurpose = true;
        showLogin('The console was closed: ' + (f.reason || 'no reason given') + '.');
        status('Disconnected: ' + (f.reason || ''));
        break;
      case 'error': onError(f); break;
      case 'softphone': onSoftphone(f); break;
      case 'call_media': onCallMedia(f); break;
    }
  }

  // ---- availability ----
  var lastAvailability = null;
  function onAvailability(f) {
    lastAvailability = f;
    var chans = f.channels || {};
    var known = Object.keys(chans).length > 0;
    ['chat', 'phone'].forEach(function (ch) {
      var box = $('#available-' + ch);
      var has = !known || Object.prototype.hasOwnProperty.call(chans, ch);
      $('#available-' + ch + '-label').hidden = !has;
      box.checked = !!chans[ch];
    });
    showPhone(known && Object.prototype.hasOwnProperty.call(chans, 'phone'), f.phone || '', !!chans.phone);
    var on = Object.keys(chans).filter(function (c) { return chans[c]; });
    $('#load').textContent = (on.length ? 'Available for ' + on.join(' and ') : 'Away (not available)') +
      ' · ' + f.active + ' of ' + f.capacity + ' conversations open';
    $('#availability').classList.toggle('is-on', on.length > 0);
    status(on.length ? 'You are available for ' + on.join(' and ') + '. Offers ring here.' :
      'You are signed in but away: switch a channel on to receive offers.');
  }
  // ---- the volunteer's phone: where calls ring ----
  function showPhone(hasPhone, phone, on) {
    ['#phone-form', '#phone-help', '#phone-in-use', '#phone-error'].forEach(function (s) { $(s).hidden = !hasPhone; });
    if (!hasPhone) { return; }
    var line = $('#phone-in-use');
    line.classList.toggle('missing', !phone);
    var inBrowser = phone === 'browser';
    $('#phone-browser').checked = inBrowser;
    $('#phone').disabled = inBrowser;
    $('#phone-set').disabled = inBrowser;
    if (inBrowser) {
      line.textContent = 'Calls ring in this browser' + (on ? '.' : ' (switch phone on to take calls).');
      $('#phone-error').textContent = '';
      // After a reload the phone is still "browser": have the microphone
      // ready before a call rings.
      // Once: a refusal is not asked again at every availability.
      if (!micLive() && !sp.micAsked) {
        sp.micAsked = true;
        getMic().catch(function (e) { $('#phone-error').textContent = micError(e); });
      }
    } else if (phone) {
      line.textContent = 'Calls ring at ' + phone + (on ? '.' : ' (switch phone on to take calls).');
      $('#phone-error').textContent = '';
    } else {
      line.textContent = 'No phone given: give one before you switch phone on.';
    }
  }
  $('#phone-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    $('#phone-error').textContent = '';
    send({ type: 'phone', phone: $('#phone').value.trim() });
  });

  ['chat', 'phone'].forEach(function (ch) {
    $('#available-' + ch).addEventListener('change', function (ev) {
      unlockAudio();
      if (!send({ type: 'available', channel: ch, on: ev.target.checked })) { ev.target.checked = !ev.target.checked; }
    });
  });
  $('#away').addEventListener('click', function () {
    var chans = (lastAvailability && lastAvailability.channels) || {};
    var any = false;
    Object.keys(chans).forEach(function (ch) {
      if (chans[ch]) { any = true; send({ type: 'available', channel: ch, on: false }); }
    });
    status(any ? 'You are on a break: no new offers until you switch a channel on again.' : 'You are already away.');
  });

  // ---- offers ----
  function onOffer(f) {
    if (offers[f.contact]) { removeOffer(f.contact); }
    if (f.channel === 'phone' && lastAvailability && lastAvailability.phone === 'browser') { onBrowserOffer(f); return; }
    if (f.channel === 'phone') { onPhoneOffer(f); return; }
    var ring = Math.max(0, f.ring_seconds | 0);
    var box = el('article', { class: 'offer', 'data-contact': f.contact, 'aria-labelledby': 'offer-t-' + f.contact });
    var title = el('h3', { id: 'offer-t-' + f.contact });
    title.textContent = 'Incoming ' + (CHANNEL_NAMES[f.channel] || f.channel) + ' · language ' + f.language;
    box.appendChild(title);
    if (f.from_centre) {
      box.appendChild(el('p', { class: 'offer-from badge' }, 'From centre ' + f.from_centre + ' (overflow)'));
    }
    var cd = el('p', { class: 'countdown-line' });
    cd.appendChild(document.createTextNode('Rings for '));
    var secs = el('span', { class: 'countdown', 'aria-live': 'off' }, String(ring));
    cd.appendChild(secs);
    cd.appendChild(document.createTextNode(' s'));
    box.appendChild(cd);
    var actions = el('div', { class: 'actions' });
    var acc = el('button', { type: 'button', class: 'accept' }, 'Accept');
    var dec = el('button', { type: 'button', class: 'decline' }, 'Decline');
    acc.setAttribute('aria-label', 'Accept ' + f.channel + ' in ' + f.language + (f.from_centre ? ' from centre ' + f.from_centre : ''));
    dec.setAttribute('aria-label', 'Decline ' + f.channel + ' in ' + f.language + (f.from_centre ? ' from centre ' + f.from_centre : ''));
    acc.addEventListener('click', function () {
      acc.disabled = true; dec.disabled = true;
      send({ type: 'accept', contact: f.contact });
    });
    dec.addEventListener('click', function () {
      acc.disabled = true; dec.disabled = true;
      send({ type: 'decline', contact: f.contact });
    });
    actions.appendChild(acc);
    actions.appendChild(dec);
    box.appendChild(actions);
    $('#offers').appendChild(box);
    var until = Date.now() + ring * 1000;
    var timer = window.setInterval(function () {
      var left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      secs.textContent = String(left);
      if (left <= 5) { box.classList.add('urgent'); }
    }, 1000);
    offers[f.contact] = { el: box, timer: timer, language: f.language, channel: f.channel };
    announce('Incoming ' + f.channel + ' in ' + f.language + (f.from_centre ? ', overflowed from centre ' + f.from_centre : '') +
      '. ' + ring + ' seconds to accept.');
    chime();
  }

  // A call rings on the volunteer's own phone at once: the card only says
  // so. There is nothing to accept (the phone is answered on the phone);
  // Decline works until the call reaches the phone.
  function onPhoneOffer(f) {
    var box = el('article', { class: 'offer offer-phone', 'data-contact': f.contact, 'data-channel': 'phone', 'aria-labelledby': 'offer-t-' + f.contact });
    box.appendChild(el('h3', { id: 'offer-t-' + f.contact }, 'Call coming to your phone' +
      (f.from_centre ? ' · from centre ' + f.from_centre : '') + ' · language ' + f.language));
    if (f.from_centre) {
      box.appendChild(el('p', { class: 'offer-from badge' }, 'From centre ' + f.from_centre + ' (overflow)'));
    }
    var line = el('p', { class: 'phone-note' }, 'Your phone rings in a moment. Answer it there.');
    box.appendChild(line);
    var problem = el('p', { class: 'phone-problem', role: 'status' });
    box.appendChild(problem);
    var actions = el('div', { class: 'actions' });
    var dec = el('button', { type: 'button', class: 'decline' }, 'Decline');
    dec.setAttribute('aria-label', 'Decline the call in ' + f.language + (f.from_centre ? ' from centre ' + f.from_centre : ''));
    dec.addEventListener('click', function () {
      dec.disabled = true;
      if (!send({ type: 'decline', contact: f.contact })) { dec.disabled = false; }
    });
    actions.appendChild(dec);
    box.appendChild(actions);
    $('#offers').appendChild(box);
    offers[f.contact] = { el: box, timer: 0, language: f.language, channel: 'phone', problem: problem, decline: dec };
    announce('A call is coming to your phone, in ' + f.language + (f.from_centre ? ', overflowed from centre ' + f.from_centre : '') + '. Answer it on your phone.');
    chime();
  }

  // removeOffer drops an offer's box; it says whether the box had focus
  // (then focus moves on, unless keepFocus: the caller places it).
  function removeOffer(contact, keepFocus) {
    var o = offers[contact];
    if (!o) { return false; }
    if (o.browser) { stopRing(); }
    window.clearInterval(o.timer);
    var hadFocus = o.el.contains(document.activeElement);
    o.el.remove();
    delete offers[contact];
    if (hadFocus && !keepFocus) { focusSomewhere(); }
    return hadFocus;
  }

  function focusSomewhere() {
    var b = $('#offers button.accept') || $('#chats textarea.reply') || $('#chats button.call-over:not([hidden])') || $('#available-chat');
    if (b) { b.focus(); }
  }

  function onWithdrawn(f) {
    endBrowserCall(f.contact);
    var o = offers[f.contact];
    if (!o) { return; }
    removeOffer(f.contact);
    if (o.channel === 'phone') {
      status(o.decline.disabled ? 'Call declined: it goes back to the phone queue.' : 'The call will not come: ' + (f.reason || 'withdrawn') + '.');
      return;
    }
    status('Offer withdrawn: ' + (f.reason || 'no longer ringing') + '.');
  }

  // ---- conversations ----
  function updateNoChats() {
    $('#no-chats').hidden = Object.keys(chats).length > 0;
  }

  function onConnected(f) {
    var o = offers[f.contact];
    var lang = o ? o.language : '';
    var phone = f.channel === 'phone' || (o && o.channel === 'phone');
    var active = document.activeElement;
    var focusHere = removeOffer(f.contact, true) || !active || active === document.body;
    if (chats[f.contact]) { return; }
    if (phone) { onCallConnected(f, lang, focusHere); return; }
    var n = Object.keys(chats).length + 1;
    var id = 'chat-' + f.contact;
    var box = el('section', { class: 'chat card', 'data-contact': f.contact, 'aria-labelledby': id + '-t' });
    var head = el('header', { class: 'chat-head' });
    var title = el('h3', { id: id + '-t' }, 'Conversation ' + n + (lang ? ' · ' + lang : ''));
    head.appendChild(title);
    if (f.from_centre) {
      head.appendChild(el('span', { class: 'badge badge-centre' }, 'From centre ' + f.from_centre));
    }
    box.appendChild(head);
    var log = el('div', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages in conversation ' + n, tabindex: '0' });
    box.appendChild(log);
    var typing = el('p', { class: 'typing', 'aria-live': 'polite' });
    box.appendChild(typing);
    var form = el('form', { class: 'compose' });
    var lab = el('label', { for: id + '-reply', class: 'visually-hidden' }, 'Reply in conversation ' + n);
    var ta = el('textarea', { id: id + '-reply', class: 'reply', rows: '2', maxlength: '4000', placeholder: 'Write a reply (Enter sends, Shift+Enter for a new line)' });
    var sendB = el('button', { type: 'submit', class: 'send' }, 'Send');
    sendB.setAttribute('aria-label', 'Send reply in conversation ' + n);
    form.appendChild(lab);
    form.appendChild(ta);
    form.appendChild(sendB);
    box.appendChild(form);
    var endB = el('button', { type: 'button', class: 'end' }, 'End conversation');
    endB.setAttribute('aria-label', 'End conversation ' + n);
    box.appendChild(endB);
    var c = { el: box, log: log, typing: typing, ta: ta, send: sendB, end: endB, n: n, open: true, typingTimer: 0, lastTyping: 0 };
    chats[f.contact] = c;

    form.addEventListener('submit', function (ev) { ev.preventDefault(); sendReply(f.contact); });
    ta.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendReply(f.contact); }
    });
    ta.addEventListener('input', function () {
      var now = Date.now();
      if (c.open && ta.value && now - c.lastTyping > 3000) {
        c.lastTyping = now;
        send({ type: 'typing', contact: f.contact });
      }
    });
    endB.addEventListener('click', function () { showCategorise(f.contact, false); });

    $('#chats').appendChild(box);
    updateNoChats();
    note(c, f.from_centre ? 'Connected. The visitor came to centre ' + f.from_centre + '.' : 'Connected.');
    announce('Conversation ' + n + ' is open.');
    if (focusHere) { ta.focus(); }
  }

  // A call in progress: no message box (the talking is on the phone), a
  // timer, and a way to categorise should the hang-up never come through.
  function onCallConnected(f, lang, focusHere) {
    var n = Object.keys(chats).length + 1;
    var id = 'chat-' + f.contact;
    var box = el('section', { class: 'chat card call', 'data-contact': f.contact, 'data-channel': 'phone', 'aria-labelledby': id + '-t' });
    var head = el('header', { class: 'chat-head' });
    head.appendChild(el('h3', { id: id + '-t' }, 'Call ' + n + (lang ? ' · ' + lang : '')));
    if (f.from_centre) {
      head.appendChild(el('span', { class: 'badge badge-centre' }, 'From centre ' + f.from_centre));
    }
    box.appendChild(head);
    var state = el('p', { class: 'call-state' });
    var what = el('span', { class: 'call-what' }, 'On the phone');
    var timer = el('span', { class: 'call-timer', 'aria-label': 'call length' }, '0:00');
    state.appendChild(what);
    state.appendChild(document.createTextNode(' · '));
    state.appendChild(timer);
    box.appendChild(state);
    var log = el('div', { class: 'messages call-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Notes on call ' + n });
    box.appendChild(log);
    var browser = sp.contact === f.contact;
    if (browser) {
      what.textContent = 'In a call in this browser';
      box.setAttribute('data-browser', 'true');
    }
    var endB = el('button', { type: 'button', class: 'end call-over' }, 'Call over? Categorise it');
    endB.setAttribute('aria-label', 'Call ' + n + ' is over: categorise it');
    box.appendChild(endB);
    var start = Date.now();
    var c = { el: box, log: log, typing: null, ta: null, send: null, end: endB, n: n, open: true, call: true,
      what: what, timerEl: timer, start: start, tick: 0 };
    c.tick = window.setInterval(function () { timer.textContent = callLength(c); }, 1000);
    if (browser) { addCallControls(c, f.contact, box, log); }
    chats[f.contact] = c;
    endB.addEventListener('click', function () { showCategorise(f.contact, false); });
    $('#chats').appendChild(box);
    updateNoChats();
    if (browser) {
      note(c, 'Connected in this browser. Speak into your headset.' + (f.from_centre ? ' The caller came to centre ' + f.from_centre + '.' : ''));
    } else {
      note(c, f.from_centre ? 'Your phone picked up. The caller came to centre ' + f.from_centre + '.' : 'Your phone picked up.');
    }
    announce('Call ' + n + ' is connected.');
    if (focusHere) { endB.focus(); }
  }

  function callLength(c) {
    var s = Math.max(0, Math.floor((Date.now() - c.start) / 1000));
    var m = Math.floor(s / 60);
    s = s % 60;
    return m + ':' + (s < 10 ? '0' : '') + s;
  }

  function stopCallTimer(c) {
    if (c && c.tick) { window.clearInterval(c.tick); c.tick = 0; }
  }

  function note(c, text) {
    c.log.appendChild(el('p', { class: 'msg note' }, text));
    c.log.scrollTop = c.log.scrollHeight;
  }

  function addMsg(c, who, id, text) {
    var p = el('p', { class: 'msg ' + who });
    if (id) { p.setAttribute('data-id', id); }
    p.appendChild(el('span', { class: 'visually-hidden' }, who === 'visitor' ? 'Visitor: ' : 'You: '));
    p.appendChild(document.createTextNode(text));
    c.log.appendChild(p);
    c.log.scrollTop = c.log.scrollHeight;
    return p;
  }

  function sendReply(contact) {
    var c = chats[contact];
    if (!c || !c.open) { return; }
    var text = c.ta.value.trim();
    if (!text) { return; }
    msgSeq += 1;
    var id = 'v' + msgSeq;
    if (send({ type: 'message', contact: contact, id: id, text: text })) {
      var p = addMsg(c, 'volunteer', id, text);
      p.classList.add('pending');
      c.ta.value = '';
    }
  }

  function onMessage(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    c.typing.textContent = '';
    addMsg(c, 'visitor', f.id, f.text);
  }

  function onTyping(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    c.typing.textContent = 'The visitor is typing…';
    window.clearTimeout(c.typingTimer);
    c.typingTimer = window.setTimeout(function () { c.typing.textContent = ''; }, 4000);
  }

  function onDelivered(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    var p = c.log.querySelector('.msg.volunteer[data-id="' + String(f.id).replace(/["\\]/g, '') + '"]');
    if (p) { p.classList.remove('pending'); p.classList.add('delivered'); }
  }

  function closeChat(c) {
    c.open = false;
    if (c.ta) { c.ta.disabled = true; }
    if (c.send) { c.send.disabled = true; }
    c.end.hidden = true;
    if (c.typing) { c.typing.textContent = ''; }
    if (c.controls) { c.controls.hidden = true; }
    if (c.call && c.tick) {
      stopCallTimer(c);
      c.timerEl.textContent = callLength(c);
      c.what.textContent = 'Call over, length';
    }
  }

  var CALL_ENDED = {
    caller: 'The caller hung up.',
    volunteer: 'You hung up.',
    unanswered: 'The call was not answered.'
  };

  function onEnded(f) {
    endBrowserCall(f.contact);
    var c = chats[f.contact];
    if (!c) { return; }
    if (c.call) {
      var existing = c.el.querySelector('.categorise');
      closeChat(c);
      note(c, (CALL_ENDED[f.by] || 'The call ended.') + ' Please categorise it.');
      announce('Call ' + c.n + ' ended.');
      // A form opened while the call was live now only saves.
      if (existing) { existing.remove(); }
      showCategorise(f.contact, true);
      return;
    }
    closeChat(c);
    note(c, 'The visitor has left the conversation. Please categorise it.');
    announce('The visitor left conversation ' + c.n + '.');
    showCategorise(f.contact, true);
  }

  function onLost(f) {
    endBrowserCall(f.contact);
    var c = chats[f.contact];
    if (!c) { return; }
    closeChat(c);
    var form = c.el.querySelector('.categorise');
    if (form) { form.remove(); }
    var msg = 'The connection to the visitor\'s centre was lost. The visitor has been put back in the queue for another volunteer.';
    if (f.undelivered > 0) { msg += ' ' + f.undelivered + ' of your last messages may not have reached them.'; }
    msg += ' Nothing to categorise.';
    var box = el('div', { class: 'lost', role: 'alert' });
    box.appendChild(el('p', null, msg));
    var b = el('button', { type: 'button', class: 'dismiss' }, 'Close this conversation');
    b.addEventListener('click', function () { removeChat(f.contact); });
    box.appendChild(b);
    c.el.appendChild(box);
  }

  function removeChat(contact) {
    var c = chats[contact];
    if (!c) { return; }
    var hadFocus = c.el.contains(document.activeElement);
    stopCallTimer(c);
    c.el.remove();
    delete chats[contact];
    updateNoChats();
    if (hadFocus) { focusSomewhere(); }
  }

  function showCategorise(contact, visitorEnded) {
    var c = chats[contact];
    if (!c) { return; }
    var existing = c.el.querySelector('.categorise');
    if (existing) { existing.querySelector('input, select').focus(); return; }
    var fid = 'cat-' + contact;
    var form = el('form', { class: 'categorise', 'aria-labelledby': fid + '-t' });
    var what = c.call ? 'call' : 'conversation';
    form.appendChild(el('h4', { id: fid + '-t' }, 'Categorise ' + what + ' ' + c.n));
    var fs = el('fieldset', { class: 'topics' });
    fs.appendChild(el('legend', null, 'Topics (1 to 8)'));
    policy.topics.forEach(function (t, i) {
      var lab = el('label', { class: 'topic' });
      var cb = el('input', { type: 'checkbox', name: 'topic', value: t, id: fid + '-topic-' + i });
      lab.appendChild(cb);
      lab.appendChild(document.createTextNode(' ' + t.replace(/-/g, ' ')));
      fs.appendChild(lab);
    });
    form.appendChild(fs);
    var al = el('label', { for: fid + '-age' }, 'Age group');
    var sel = el('select', { id: fid + '-age', class: 'age-group' });
    policy.age_groups.forEach(function (g) { sel.appendChild(el('option', { value: g }, g)); });
    form.appendChild(al);
    form.appendChild(sel);
    var err = el('p', { class: 'error', role: 'alert' });
    form.appendChild(err);
    var actions = el('div', { class: 'actions' });
    var submit = el('button', { type: 'submit', class: 'submit-categorisation' }, visitorEnded ? 'Save categorisation' :
      (c.call ? 'The call is over: save categorisation' : 'End and save categorisation'));
    actions.appendChild(submit);
    if (!visitorEnded) {
      var cancel = el('button', { type: 'button', class: 'cancel-end' }, 'Back to the ' + what);
      cancel.addEventListener('click', function () { form.remove(); (c.ta || c.end).focus(); });
      actions.appendChild(cancel);
    }
    form.appendChild(actions);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var topics = Array.prototype.map.call(form.querySelectorAll('input[name=topic]:checked'), function (x) { return x.value; });
      if (topics.length < 1 || topics.length > 8) {
        err.textContent = 'Choose between 1 and 8 topics.';
        var first = form.querySelector('input[name=topic]');
        if (first) { first.focus(); }
        return;
      }
      err.textContent = '';
      submit.disabled = true;
      if (!send({ type: 'end', contact: contact, topics: topics, age_group: sel.value })) { submit.disabled = false; }
    });
    c.el.appendChild(form);
    var firstBox = form.querySelector('input[name=topic]');
    if (firstBox) { firstBox.focus(); } else { sel.focus(); }
  }

  function onCategorised(f) {
    endBrowserCall(f.contact);
    var c = chats[f.contact];
    var n = c ? c.n : '';
    var what = c && c.call ? 'Call ' : 'Conversation ';
    removeChat(f.contact);
    status(what + n + ' ended and categorised. Thank you.');
  }

  function onError(f) {
    var text = f.error || f.code || 'error';
    if (SOFTPHONE_ERRORS[f.code]) { onSoftphoneError(f, text); return; }
    if (f.code === 'bad_phone' || f.code === 'no_phone') {
      // The phone box was ticked but nothing changed at the centre.
      if (lastAvailability) { onAvailability(lastAvailability); }
      $('#phone-error').textContent = f.code === 'no_phone' ?
        'Give your phone (extension or SIP address) first, then switch phone on.' : 'That phone was not accepted: ' + text;
      $('#phone').focus();
      return;
    }
    var o = f.contact && offers[f.contact];
    if (o && o.browser && f.code === 'offer_gone') {
      o.problem.textContent = 'Too late to decline: the call is ringing here. Answer it, or let it ring out.';
      o.decline.hidden = true;
      return;
    }
    if (o && o.channel === 'phone' && f.code === 'offer_gone') {
      // Too late to decline: the call reached the phone, which decides.
      o.problem.textContent = /ringing on your phone/.test(text) ?
        'The call is ringing on your phone: answer or refuse it there.' : 'Too late to decline: ' + text;
      o.decline.hidden = true;
      return;
    }
    if (f.contact && chats[f.contact]) {
      var c = chats[f.contact];
      var form = c.el.querySelector('.categorise');
      if (form) {
        form.querySelector('.error').textContent = text;
        var b = form.querySelector('.submit-categorisation');
        if (b) { b.disabled = false; }
        return;
      }
      if (f.id) {
        var p = c.log.querySelector('.msg.volunteer[data-id="' + String(f.id).replace(/["\\]/g, '') + '"]');
        if (p) { p.classList.add('failed'); }
      }
      note(c, 'Not sent: ' + text);
      return;
    }
    if (f.contact && offers[f.contact]) {
      removeOffer(f.contact);
    }
    status('Problem: ' + text);
  }

  // ---- the browser phone: calls answered in this page over WebRTC ----
  // The node sends "softphone" when it has one. The microphone is asked
  // for when the volunteer switches it on (so the browser's prompt comes
  // before a call, never during one) and kept until logout. window.softphone
  // and window.softphoneCapture are hooks for tests (what the browser hears).
  var sp = { available: false, ice: [], processing: true, stream: null, pc: null, contact: '',
    remoteStream: null, ringing: false, muted: false, micAsked: false };
  window.softphone = sp;
  var ringTimer = 0;
  var ringNodes = [];
  var SOFTPHONE_ERRORS = { no_call: true, bad_sdp: true, call_failed: true, busy: true, no_softphone: true };

  function onSoftphone(f) {
    sp.available = true;
    sp.ice = f.ice_servers || [];
    sp.processing = f.audio_processing !== false;
    $('#phone-browser-label').hidden = false;
    $('#phone-browser-help').hidden = false;
  }

  function micLive() {
    return !!sp.stream && sp.stream.getAudioTracks().some(function (t) { return t.readyState === 'live'; });
  }

  // One microphone request at a time (the availability frame and an
  // Answer click may both ask while the permission prompt is open), and a
  // request that resolves after the browser phone was switched off stops
  // its stream at once: the microphone is never left on unseen.
  var micPending = null, micGen = 0;
  function getMic() {
    if (micLive()) { return Promise.resolve(sp.stream); }
    if (micPending) { return micPending; }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.reject(new Error('this browser cannot use a microphone here (it needs https)'));
    }
    var p = sp.processing, gen = micGen;
    micPending = navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: p, noiseSuppression: p, autoGainControl: p } })
      .then(function (stream) {
        micPending = null;
        if (gen !== micGen) {
          stream.getTracks().forEach(function (t) { t.stop(); });
          throw new Error('the browser phone was switched off');
        }
        stream.getAudioTracks().forEach(function (t) { t.enabled = !sp.muted; });
        sp.stream = stream;
        // When the microphone opened, in the page's clock: a test's fake
        // microphone plays its file from here, not from the call.
        sp.micAt = performance.now();
        return stream;
      }, function (e) {
        micPending = null;
        throw e;
      });
    return micPending;
  }

  function stopMic() {
    micGen++;
    sp.micAsked = false;
    if (sp.stream) { sp.stream.getTracks().forEach(function (t) { t.stop(); }); }
    sp.stream = null;
  }

  function micError(e) {
    var name = e && e.name;
    if (name === 'NotAllowedError' || name === 'SecurityError') {
      return 'Microphone blocked: allow it in the browser\'s address bar, then switch "Answer calls in this browser" on again.';
    }
    if (name === 'NotFoundError' || name === 'OverconstrainedError') { return 'No microphone found: plug in a headset and try again.'; }
    if (name === 'NotReadableError') { return 'The microphone is in use by another program: close it and try again.'; }
    return 'The microphone could not be opened: ' + ((e && e.message) || e) + '.';
  }

  $('#phone-browser').addEventListener('change', function (ev) {
    var box = ev.target;
    sp.micAsked = true;
    $('#phone-error').textContent = '';
    unlockAudio();
    if (!box.checked) {
      stopMic();
      send({ type: 'phone', phone: '' });
      return;
    }
    status('Your browser asks to use your microphone: allow it to answer calls here.');
    getMic().then(function () {
      if (!box.checked) { return; } // switched off while the browser asked
      if (!send({ type: 'phone', phone: 'browser' })) { box.checked = false; }
    }).catch(function (e) {
      if (!box.checked) { return; } // switched off meanwhile: nothing to say
      box.checked = false;
      $('#phone-error').textContent = micError(e);
    });
  });

  // The ring: 425 Hz in two short bursts every 3 s (WebAudio, no file).
  function startRing() {
    stopRing();
    unlockAudio();
    sp.ringing = true;
    var burst = function () {
      try {
        if (!audio) { return; }
        var t = audio.currentTime;
        [0, 0.5].forEach(function (at) {
          var o = audio.createOscillator();
          var g = audio.createGain();
          o.type = 'sine';
          o.frequency.value = 425;
          g.gain.setValueAtTime(0.0001, t + at);
          g.gain.exponentialRampToValueAtTime(0.15, t + at + 0.03);
          g.gain.setValueAtTime(0.15, t + at + 0.37);
          g.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.4);
          o.connect(g);
          g.connect(audio.destination);
          o.start(t + at);
          o.stop(t + at + 0.42);
          ringNodes.push(o);
          o.onended = function () { ringNodes = ringNodes.filter(function (x) { return x !== o; }); };
        });
      } catch (e) { /* the card still shows the call */ }
    };
    burst();
    ringTimer = window.setInterval(burst, 3000);
  }

  function stopRing() {
    sp.ringing = false;
    window.clearInterval(ringTimer);
    ringTimer = 0;
    ringNodes.forEach(function (o) { try { o.stop(); } catch (e) { /* already stopped */ } });
    ringNodes = [];
  }

  // A call ringing in this browser: Answer or Decline.
  function onBrowserOffer(f) {
    var box = el('article', { class: 'offer offer-phone', 'data-contact': f.contact, 'data-channel': 'phone', 'data-browser': 'true',
      'aria-labelledby': 'offer-t-' + f.contact });
    box.appendChild(el('h3', { id: 'offer-t-' + f.contact }, 'Call for you' +
      (f.from_centre ? ' · from centre ' + f.from_centre : '') + ' · language ' + f.language));
    if (f.from_centre) {
      box.appendChild(el('p', { class: 'offer-from badge' }, 'From centre ' + f.from_centre + ' (overflow)'));
    }
    box.appendChild(el('p', { class: 'phone-note' }, 'Answer it here, with your headset on.'));
    var problem = el('p', { class: 'phone-problem', role: 'status' });
    box.appendChild(problem);
    var actions = el('div', { class: 'actions' });
    var acc = el('button', { type: 'button', class: 'accept answer-call' }, 'Answer');
    var dec = el('button', { type: 'button', class: 'decline' }, 'Decline');
    var who = ' the call in ' + f.language + (f.from_centre ? ' from centre ' + f.from_centre : '');
    acc.setAttribute('aria-label', 'Answer' + who);
    dec.setAttribute('aria-label', 'Decline' + who);
    acc.addEventListener('click', function () {
      acc.disabled = true; dec.disabled = true;
      stopRing();
      problem.textContent = 'Connecting…';
      startCall(f.contact);
    });
    dec.addEventListener('click', function () {
      acc.disabled = true; dec.disabled = true;
      stopRing();
      if (!send({ type: 'decline', contact: f.contact })) { acc.disabled = false; dec.disabled = false; }
    });
    actions.appendChild(acc);
    actions.appendChild(dec);
    box.appendChild(actions);
    $('#offers').appendChild(box);
    offers[f.contact] = { el: box, timer: 0, language: f.language, channel: 'phone', browser: true, problem: problem, decline: dec, accept: acc };
    announce('A call for you, in ' + f.language + (f.from_centre ? ', overflowed from centre ' + f.from_centre : '') + '. Answer it here.');
    startRing();
    acc.focus();
  }

  // iceDone waits for ICE gathering: the offer carries every candidate (no
  // trickle), so one frame each way sets the call up. After 5 s it goes on
  // with what it has.
  function iceDone(pc) {
    if (pc.iceGatheringState === 'complete') { return Promise.resolve(); }
    return new Promise(function (resolve) {
      var t = window.setTimeout(resolve, 5000);
      pc.addEventListener('icegatheringstatechange', function () {
        if (pc.iceGatheringState === 'complete') { window.clearTimeout(t); resolve(); }
      });
    });
  }

  function startCall(contact) {
    endBrowserCall(sp.contact);
    var pc = null;
    sp.contact = contact;
    getMic().then(function (stream) {
      if (sp.contact !== contact) { throw new Error('hung up'); }
      pc = new RTCPeerConnection({ iceServers: sp.ice });
      sp.pc = pc;
      sp.remoteStream = new MediaStream();
      pc.ontrack = function (e) {
        sp.remoteStream.addTrack(e.track);
        var a = $('#softphone-audio');
        a.srcObject = sp.remoteStream;
        a.play().catch(function () { /* autoplay: the Answer click allows it */ });
        capture.track(e.track);
      };
      pc.onconnectionstatechange = function () {
        if (sp.pc !== pc) { return; }
        var c = chats[contact];
        if (pc.connectionState === 'failed' && c) { note(c, 'The voice connection failed. Hang up, and tell your coordinator.'); }
        if (pc.connectionState === 'disconnected' && c) { note(c, 'The voice connection is interrupted…'); }
      };
      stream.getAudioTracks().forEach(function (t) { t.enabled = !sp.muted; pc.addTrack(t, stream); });
      return pc.createOffer();
    }).then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return iceDone(pc); })
      .then(function () {
        if (sp.pc !== pc) { return; }
        if (!send({ type: 'answer_call', contact: contact, sdp: pc.localDescription.sdp })) { throw new Error('not connected to the centre'); }
      }).catch(function (e) {
        if (sp.contact !== contact) { return; }
        endBrowserCall(contact);
        var o = offers[contact];
        var text = e && e.name ? micError(e) : 'The call could not start: ' + ((e && e.message) || e) + '.';
        if (o) { o.problem.textContent = text; o.accept.disabled = false; o.decline.disabled = false; } else { status(text); }
      });
  }

  function onCallMedia(f) {
    var pc = sp.pc;
    if (!pc || sp.contact !== f.contact) { return; }
    pc.setRemoteDescription({ type: 'answer', sdp: f.sdp }).catch(function (e) {
      if (sp.pc !== pc) { return; }
      var c = chats[f.contact];
      var text = 'The centre\'s answer could not be used (' + e.message + '). Hang up and tell your coordinator.';
      if (c) { note(c, text); } else if (offers[f.contact]) { offers[f.contact].problem.textContent = text; }
    });
  }

  // endBrowserCall closes the voice of contact's call, if it is this
  // browser's (the ring too).
  function endBrowserCall(contact) {
    if (!contact || sp.contact !== contact) { return; }
    stopRing();
    if (sp.pc) { try { sp.pc.close(); } catch (e) { /* closed */ } }
    sp.pc = null;
    sp.contact = '';
    capture.track(null);
    var a = $('#softphone-audio');
    a.srcObject = null;
    sp.remoteStream = null;
  }

  function addCallControls(c, contact, box, log) {
    var row = el('div', { class: 'actions call-controls' });
    var mute = el('button', { type: 'button', class: 'mute', 'aria-pressed': sp.muted ? 'true' : 'false' }, sp.muted ? 'Unmute' : 'Mute');
    var hang = el('button', { type: 'button', class: 'hang-up' }, 'Hang up');
    mute.setAttribute('aria-label', 'Mute your microphone in call ' + c.n);
    hang.setAttribute('aria-label', 'Hang up call ' + c.n);
    mute.addEventListener('click', function () {
      sp.muted = !sp.muted;
      if (sp.stream) { sp.stream.getAudioTracks().forEach(function (t) { t.enabled = !sp.muted; }); }
      mute.textContent = sp.muted ? 'Unmute' : 'Mute';
      mute.setAttribute('aria-pressed', sp.muted ? 'true' : 'false');
      box.classList.toggle('muted', sp.muted);
      note(c, sp.muted ? 'Muted: the caller does not hear you.' : 'Unmuted: the caller hears you.');
    });
    hang.addEventListener('click', function () {
      hang.disabled = true;
      if (!send({ type: 'hang_up', contact: contact })) { hang.disabled = false; return; }
      endBrowserCall(contact);
      note(c, 'You hung up.');
    });
    row.appendChild(mute);
    row.appendChild(hang);
    box.insertBefore(row, log);
    c.controls = row;
  }

  function onSoftphoneError(f, text) {
    if (f.code === 'no_softphone') {
      $('#phone-browser').checked = false;
      $('#phone-error').textContent = 'This centre has no browser phone: give a desk phone instead.';
      return;
    }
    var msg = {
      no_call: 'No call is ringing for you any more.',
      bad_sdp: 'Your browser\'s call setup was refused (' + text + '). Try again, or reload the page.',
      call_failed: 'The call could not be connected (' + text + '). Try again.',
      busy: 'The call is being connected already.'
    }[f.code];
    if (f.code !== 'busy') { endBrowserCall(f.contact); }
    var o = f.contact && offers[f.contact];
    if (o && o.browser) {
      o.problem.textContent = msg;
      o.accept.disabled = f.code === 'no_call';
      o.decline.disabled = false;
      return;
    }
    var c = f.contact && chats[f.contact];
    if (c) { note(c, msg); return; }
    status('Problem: ' + msg);
  }

  // capture records what the browser hears (the remote track) at 8 kHz,
  // for tests: the track must also play in an <audio> element for
  // MediaStreamTrackProcessor to get samples, and the rate changes mid-track
  // (48 kHz silence before RTP, then the codec's), so each chunk is
  // brought to 8 kHz by its own rate.
  var capture = (function () {
    var on = false, current = null, reader = null, chunks = [], frames = 0, rates = {};
    function run(track) {
      if (typeof MediaStreamTrackProcessor === 'undefined') { return; }
      var rd = new MediaStreamTrackProcessor({ track: track }).readable.getReader();
      reader = rd;
      var pump = function () {
        rd.read().then(function (r) {
          if (r.done || reader !== rd) { if (r.value) { r.value.close(); } return; }
          var v = r.value, rate = v.sampleRate;
          rates[rate] = (rates[rate] || 0) + 1;
          var raw = new Float32Array(v.numberOfFrames);
          v.copyTo(raw, { planeIndex: 0, format: 'f32-planar' });
          v.close();
          var k = rate / 8000, buf = new Float32Array(Math.floor(raw.length / k));
          for (var i = 0; i < buf.length; i++) {
            var sum = 0, lo = Math.floor(i * k), hi = Math.floor((i + 1) * k);
            for (var j = lo; j < hi; j++) { sum += raw[j]; }
            buf[i] = sum / (hi - lo);
          }
          if (on) { chunks.push(buf); frames += buf.length; }
          pump();
        }).catch(function () { /* the track ended */ });
      };
      pump();
    }
    function restart() {
      if (reader) { reader.cancel().catch(function () {}); reader = null; }
      if (on && current) { run(current); }
    }
    return {
      track: function (t) { current = t; restart(); },
      api: {
        start: function () { on = true; chunks = []; frames = 0; rates = {}; restart(); },
        stop: function () { on = false; if (reader) { reader.cancel().catch(function () {}); reader = null; } },
        // samples: everything captured since start, 8 kHz, as a plain array.
        samples: function () {
          var out = new Array(frames), o = 0;
          chunks.forEach(function (c) { for (var i = 0; i < c.length; i++) { out[o++] = c[i]; } });
          return out;
        },
        // samplesBase64: the same as little-endian float32, base64 (smaller over CDP).
        samplesBase64: function () {
          var all = new Float32Array(frames), o = 0;
          chunks.forEach(function (c) { all.set(c, o); o += c.length; });
          var u8 = new Uint8Array(all.buffer), s = '';
          for (var i = 0; i < u8.length; i += 0x8000) { s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000)); }
          return btoa(s);
        },
        rates: function () { return rates; }
      }
    };
  })();
  window.softphoneCapture = capture.api;

  // ---- start ----
  fetch('/v1/info', { credentials: 'same-origin' }).then(function (r) { return r.ok ? r.json() : null; })
    .then(function (info) {
      if (info && info.name) { $('#centre-name').textContent = info.name; document.title = 'Volunteer console · ' + info.name; }
    }).catch(function () {});
  // A session cookie may still be valid (reload): try the console quietly.
  openConsole(false);
})();
