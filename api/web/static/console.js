// helpmesh volunteer console. Plain JavaScript, no build step, no inline
// script (the page's CSP forbids it). Speaks the /v1/console protocol
// described in api/console.go. Every text goes through the staff pages'
// catalogue helper (static/i18n.js, window.I18N): keys console.* and common.*.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var I = window.I18N;
  var t = I.t;
  var ws = null;
  var policy = { topics: [], age_groups: [], centres: [], languages: [] };
  var offers = {};   // contact -> {el, timer, until}
  var chats = {};    // contact -> {el, ...}
  var msgSeq = 0;
  var audio = null;
  var closingOnPurpose = false;
  // channel is a channel's name in the page's language, as a var.
  function channel(ch) { return ch === 'chat' || ch === 'phone' ? { t: 'common.channel_' + ch } : String(ch); }

  var el = I.el;
  // say shows t(key, vars) in el and keeps it there through a language
  // switch; no key clears el.
  var say = I.say;
  function status(key, vars) { say($('#status'), key, vars); }
  function announce(key, vars, prefixKey) {
    var a = $('#announce');
    a.textContent = '';
    // A fresh text node makes screen readers announce repeated messages too.
    window.setTimeout(function () { a.textContent = (prefixKey ? t(prefixKey) + ' ' : '') + t(key, vars); }, 30);
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
  function showLogin(key, vars) {
    $('#desk').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    say($('#login-error'), key, vars);
    // The next volunteer at this desk gives their own phone.
    $('#phone').value = '';
    say($('#phone-error'));
    if (P) { pwReset(); $('#pw-change').open = false; }
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
    say($('#login-error'));
  }

  $('#login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    unlockAudio();
    var id = $('#volunteer').value.trim();
    var pw = $('#password').value;
    if (!id || !pw) { say($('#login-error'), 'console.login_missing'); return; }
    $('#login-submit').disabled = true;
    say($('#login-error'));
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
        if (r.status === 429) {
          var after = r.headers.get('Retry-After');
          if (after) { say($('#login-error'), 'common.too_many_seconds', { seconds: after }); } else { say($('#login-error'), 'common.too_many_later'); }
        } else if (b.error) {
          say($('#login-error'), 'common.server_error', { error: b.error });
        } else {
          say($('#login-error'), 'console.login_failed', { status: r.status });
        }
      });
    }).catch(function () {
      say($('#login-error'), 'common.unreachable');
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
        showLogin();
        status('console.logged_out');
        $('#volunteer').focus();
      });
  });

  // ---- change password ----
  // POST /v1/volunteer/password (api/password.go). The server ends every
  // other session of the volunteer and keeps this one, so the console
  // stays connected. Its refusals name the field they are about: each is
  // shown under that input.
  var P = window.HelpmeshPassword; // static/password.js: the rules and the meter
  var pwFields = { current: '#pw-current', new: '#pw-new', repeat: '#pw-repeat' };
  I.set($('#pw-rules'), 'common.pw_rules', { min: P.MIN_CHARS, max: P.MAX_BYTES });

  function pwShowStrength() { return P.show($('#pw-new').value, $('#pw-strength-bar'), $('#pw-strength-text')); }
  $('#pw-new').addEventListener('input', pwShowStrength);

  // pwSay shows key (or nothing) under field (current, new, repeat) or, for
  // no field, under the button; it marks the input invalid for screen
  // readers.
  function pwSay(field, key, vars) {
    var box = $(field ? '#pw-' + field + '-error' : '#pw-error');
    say(box, key, vars);
    if (field) {
      if (key) { $(pwFields[field]).setAttribute('aria-invalid', 'true'); } else { $(pwFields[field]).removeAttribute('aria-invalid'); }
    }
  }
  function pwClear() {
    Object.keys(pwFields).forEach(function (f) { pwSay(f); });
    pwSay('');
    say($('#pw-done'));
  }
  // pwReset empties the form: a password changed, or another volunteer
  // about to sit at this desk.
  function pwReset() {
    Object.keys(pwFields).forEach(function (f) { $(pwFields[f]).value = ''; });
    pwShowStrength();
    pwClear();
  }

  $('#pw-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    pwClear();
    var cur = $('#pw-current').value;
    var pw = $('#pw-new').value;
    var s = pwShowStrength();
    if (!cur) { pwSay('current', 'console.pw_need_current'); $('#pw-current').focus(); return; }
    if (!s.ok) { pwSay('new', 'console.pw_not_changed', { why: { t: s.key, vars: s.vars } }); $('#pw-new').focus(); return; }
    if (pw !== $('#pw-repeat').value) { pwSay('repeat', 'common.pw_not_same'); $('#pw-repeat').focus(); return; }
    $('#pw-submit').disabled = true;
    fetch('/v1/volunteer/password', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ current: cur, new: pw })
    }).then(function (r) {
      if (r.status === 204) {
        pwReset();
        say($('#pw-done'), 'console.pw_changed');
        status('console.pw_changed_status');
        return;
      }
      return r.json().catch(function () { return {}; }).then(function (b) {
        b = b || {};
        var after = r.headers.get('Retry-After');
        if (r.status === 403 && b.code === 'wrong_password') {
          pwSay('current', 'console.pw_wrong_current');
          $('#pw-current').focus();
        } else if (b.field === 'new' || b.field === 'current') {
          // The server's rule, in its words (a password the same as the
          // current one, one it counts differently).
          pwSay(b.field, 'console.pw_refused', { error: b.error || t('common.http_status', { status: r.status }) });
          $(pwFields[b.field]).focus();
        } else if (r.status === 429) {
          if (after) { pwSay('', 'common.too_many_seconds', { seconds: after }); } else { pwSay('', 'common.too_many_later'); }
        } else if (r.status === 503) {
          pwSay('', 'console.pw_busy', { seconds: after || '1' });
        } else if (r.status === 401) {
          pwSay('', 'console.pw_session_ended');
        } else if (b.error) {
          pwSay('', 'console.pw_failed_error', { status: r.status, error: b.error });
        } else {
          pwSay('', 'console.pw_failed', { status: r.status });
        }
      });
    }).catch(function () {
      pwSay('', 'common.unreachable');
    }).then(function () { $('#pw-submit').disabled = false; });
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
      showLogin('console.lost_login_again');
      status('console.disconnected');
      return;
    }
    status('console.reconnecting');
    reconnect.timer = window.setTimeout(tryReconnect, reconnect.delay);
    reconnect.delay = Math.min(reconnect.delay * 2, 5000);
  }

  function tryReconnect() {
    reconnect.timer = 0;
    fetch('/v1/volunteer/session', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status === 200) { openConsole(false, true); return; }
      if (r.status === 401) {
        stopReconnecting();
        showLogin('console.session_ended');
        status('console.disconnected');
        return;
      }
      lostConnection();
    }).catch(lostConnection);
  }

  function openConsole(fromLogin, reconnecting) {
    var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var sock;
    try { sock = new WebSocket(proto + '//' + location.host + '/v1/console'); } catch (e) { showLogin('console.cannot_open'); return; }
    ws = sock;
    closingOnPurpose = false;
    var opened = false;
    sock.onopen = function () {
      opened = true;
      showDesk();
      if (reconnecting) {
        stopReconnecting();
        status('console.reconnected');
        announce('console.reconnected_announce');
      } else {
        status('console.connected');
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
        if (fromLogin) { showLogin('console.could_not_open'); }
        else { showLogin(); }
        return;
      }
      lostConnection();
    };
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      status('console.not_connected');
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
        policy.centres = f.centres || [];
        policy.languages = f.languages || [];
        break;
      case 'transfer_accepted': onTransferAccepted(f); break;
      case 'transfer_failed': onTransferFailed(f); break;
      case 'availability': onAvailability(f); break;
      case 'care': onCare(f); break;
      case 'offer': onOffer(f); break;
      case 'offer_withdrawn': onWithdrawn(f); break;
      case 'connected': onConnected(f); break;
      case 'message': onMessage(f); break;
      case 'typing': onTyping(f); break;
      case 'delivered': onDelivered(f); break;
      case 'ended': onEnded(f); break;
      case 'lost': onResumed(f, true); onLost(f); break;
      case 'reconnecting': onReconnecting(f); break;
      case 'resumed': onResumed(f, false); break;
      case 'categorised': onCategorised(f); break;
      case 'support': onSupport(f); break;
      case 'whisper': onWhisper(f); break;
      case 'closed':
        // A centre that shuts down may be restarting: the socket's close
        // then reconnects (lostConnection). Any other reason is final.
        if (f.reason === 'the centre is shutting down') { status('console.restarting'); break; }
        closingOnPurpose = true;
        if (f.reason) { showLogin('console.closed_reason', { reason: f.reason }); } else { showLogin('console.closed_no_reason'); }
        status('console.disconnected');
        break;
      case 'error': supportRefused(f); onError(f); break;
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
    var which = on.length === 2 ? { t: 'console.channels_both' } : on.length ? channel(on[0]) : '';
    say($('#load'), on.length ? 'console.load_on' : 'console.load_away', { channels: which, active: f.active, capacity: f.capacity });
    $('#availability').classList.toggle('is-on', on.length > 0);
    if (on.length) { status('console.status_available', { channels: which }); } else { status('console.status_away'); }
  }
  // ---- care for volunteers (switchboard/care.go): why no offers come ----
  // The switchboard decides; the page only says so. data-until is the
  // switchboard's own end time (it offers again then); data-over is when
  // this page heard that the rest is over.
  function onCare(f) {
    var box = $('#care');
    var resting = f.state === 'cool_down' || f.state === 'break' || f.state === 'shift_over';
    box.dataset.state = f.state;
    box.dataset.until = f.until || '';
    if (!resting) { box.dataset.over = String(Date.now()); }
    box.hidden = f.state === 'ok';
    box.classList.toggle('is-resting', resting);
    $('#care-ready').hidden = f.state !== 'cool_down';
    var at = f.until ? new Date(f.until).toLocaleTimeString(I.lang() || undefined, { hour: '2-digit', minute: '2-digit' }) : '';
    var vars = { minutes: f.minutes || 0, time: at, count: f.in_a_row || 0 };
    switch (f.state) {
      case 'cool_down': say($('#care-text'), 'console.care_cool_down', vars); break;
      case 'break': say($('#care-text'), f.until ? 'console.care_break' : 'console.care_break_after', vars); break;
      case 'shift_ending': say($('#care-text'), 'console.care_shift_ending', vars); break;
      case 'shift_over': say($('#care-text'), 'console.care_shift_over', vars); break;
      default: say($('#care-text'));
    }
  }
  $('#care-ready').addEventListener('click', function () { send({ type: 'ready' }); });
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
      say(line, on ? 'console.rings_browser' : 'console.rings_browser_off');
      say($('#phone-error'));
      // After a reload the phone is still "browser": have the microphone
      // ready before a call rings.
      // Once: a refusal is not asked again at every availability.
      if (!micLive() && !sp.micAsked) {
        sp.micAsked = true;
        getMic().catch(function (e) { micError($('#phone-error'), e); });
      }
    } else if (phone) {
      say(line, on ? 'console.rings_at' : 'console.rings_at_off', { phone: phone });
      say($('#phone-error'));
    } else {
      say(line, 'console.no_phone_given');
    }
  }
  $('#phone-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    say($('#phone-error'));
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
    status(any ? 'console.on_break' : 'console.already_away');
  });

  // ---- offers ----
  // offerBox is an offer's card (an article with attrs) with its title
  // (titleKey) and, for a contact from another centre, that centre's badge.
  function offerBox(f, attrs, titleKey, what) {
    attrs['data-contact'] = f.contact;
    attrs['aria-labelledby'] = 'offer-t-' + f.contact;
    if (f.urgent === true) {
      // The visitor or caller said they need someone right now: marked
      // in words (read with the card's title), not by colour alone.
      attrs['class'] = (attrs['class'] || '') + ' offer-urgent';
      attrs['data-urgent'] = 'true';
    }
    var box = el('article', attrs);
    box.appendChild(I.set(el('h3', { id: 'offer-t-' + f.contact }), titleKey, what));
    if (f.urgent === true) {
      box.appendChild(I.set(el('p', { class: 'badge badge-urgent', id: 'offer-u-' + f.contact }), 'console.offer_urgent'));
      box.setAttribute('aria-describedby', 'offer-u-' + f.contact);
    }
    if (f.from_centre) {
      box.appendChild(I.set(el('p', { class: 'offer-from badge' }), 'console.from_centre_overflow', what));
    }
    return box;
  }

  // urgentKey: an urgent offer's announcement begins by saying so.
  function urgentKey(f) { return f.urgent === true ? 'console.offer_urgent_announce' : ''; }

  // cardButton is a card's button: its class, its text (key) and its
  // aria-label (labelKey with what).
  function cardButton(cls, key, labelKey, what) {
    var b = I.set(el('button', { type: 'button', class: cls }), key);
    I.setAttr(b, 'aria-label', labelKey, what);
    return b;
  }

  function onOffer(f) {
    if (offers[f.contact]) { removeOffer(f.contact); }
    if (f.channel === 'phone' && lastAvailability && lastAvailability.phone === 'browser') { onBrowserOffer(f); return; }
    if (f.channel === 'phone') { onPhoneOffer(f); return; }
    var ring = Math.max(0, f.ring_seconds | 0);
    var what = { channel: channel(f.channel), language: f.language, centre: f.from_centre || '' };
    var box = offerBox(f, { class: 'offer' }, 'console.offer_title', what);
    if (f.transfer) {
      // A colleague hands the conversation over; their note is for this
      // volunteer only (never shown to the visitor).
      box.classList.add('transfer-offer');
      box.appendChild(I.set(el('p', { class: 'badge badge-transfer' }), 'console.offer_transfer'));
      if (f.note) {
        var np = el('p', { class: 'handover-note' });
        np.appendChild(I.set(el('strong'), 'console.offer_note'));
        np.appendChild(document.createTextNode(' '));
        np.appendChild(document.createTextNode(String(f.note)));
        box.appendChild(np);
      }
    }
    var cd = el('p', { class: 'countdown-line' });
    cd.appendChild(I.set(el('span'), 'console.rings_for'));
    cd.appendChild(document.createTextNode(' '));
    var secs = el('span', { class: 'countdown', 'aria-live': 'off' }, String(ring));
    cd.appendChild(secs);
    cd.appendChild(document.createTextNode(' '));
    cd.appendChild(I.set(el('span'), 'console.seconds_short'));
    box.appendChild(cd);
    var actions = el('div', { class: 'actions' });
    var acc = cardButton('accept', 'console.accept', f.from_centre ? 'console.accept_label_from' : 'console.accept_label', what);
    var dec = cardButton('decline', 'console.decline', f.from_centre ? 'console.decline_label_from' : 'console.decline_label', what);
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
    announce(f.from_centre ? 'console.offer_announce_from' : 'console.offer_announce',
      { channel: channel(f.channel), language: f.language, centre: f.from_centre || '', seconds: ring }, urgentKey(f));
    chime();
  }

  // A call rings on the volunteer's own phone at once: the card only says
  // so. There is nothing to accept (the phone is answered on the phone);
  // Decline works until the call reaches the phone.
  function onPhoneOffer(f) {
    var what = { language: f.language, centre: f.from_centre || '' };
    var box = offerBox(f, { class: 'offer offer-phone', 'data-channel': 'phone' },
      f.from_centre ? 'console.phone_offer_title_from' : 'console.phone_offer_title', what);
    var line = I.set(el('p', { class: 'phone-note' }), 'console.phone_rings_soon');
    box.appendChild(line);
    var problem = el('p', { class: 'phone-problem', role: 'status' });
    box.appendChild(problem);
    var actions = el('div', { class: 'actions' });
    var dec = cardButton('decline', 'console.decline', f.from_centre ? 'console.decline_call_label_from' : 'console.decline_call_label', what);
    dec.addEventListener('click', function () {
      dec.disabled = true;
      if (!send({ type: 'decline', contact: f.contact })) { dec.disabled = false; }
    });
    actions.appendChild(dec);
    box.appendChild(actions);
    $('#offers').appendChild(box);
    offers[f.contact] = { el: box, timer: 0, language: f.language, channel: 'phone', problem: problem, decline: dec };
    announce(f.from_centre ? 'console.phone_offer_announce_from' : 'console.phone_offer_announce', what, urgentKey(f));
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
      if (o.decline.disabled) { status('console.call_declined'); } else if (f.reason) { status('console.call_wont_come', { reason: f.reason }); } else { status('console.call_wont_come_plain'); }
      return;
    }
    if (f.reason) { status('console.offer_withdrawn', { reason: f.reason }); } else { status('console.offer_withdrawn_plain'); }
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
    var nv = { n: n, language: lang, centre: f.from_centre || '' };
    var title = I.set(el('h3', { id: id + '-t' }), lang ? 'console.chat_title_lang' : 'console.chat_title', nv);
    head.appendChild(title);
    if (f.from_centre) {
      head.appendChild(I.set(el('span', { class: 'badge badge-centre' }), 'console.from_centre', nv));
    }
    box.appendChild(head);
    var log = I.setAttr(el('div', { class: 'messages', role: 'log', 'aria-live': 'polite', tabindex: '0' }), 'aria-label', 'console.chat_log_label', nv);
    box.appendChild(log);
    var typing = el('p', { class: 'typing', 'aria-live': 'polite' });
    box.appendChild(typing);
    var form = el('form', { class: 'compose' });
    var lab = I.set(el('label', { for: id + '-reply', class: 'visually-hidden' }), 'console.reply_label', nv);
    var ta = I.setAttr(el('textarea', { id: id + '-reply', class: 'reply', rows: '2', maxlength: '4000' }), 'placeholder', 'console.reply_placeholder');
    var sendB = I.set(el('button', { type: 'submit', class: 'send' }), 'console.send', nv);
    I.setAttr(sendB, 'aria-label', 'console.send_label');
    form.appendChild(lab);
    form.appendChild(ta);
    form.appendChild(sendB);
    box.appendChild(form);
    var endB = I.set(el('button', { type: 'button', class: 'end' }), 'console.end_chat', nv);
    I.setAttr(endB, 'aria-label', 'console.end_chat_label');
    box.appendChild(endB);
    var trB = I.set(el('button', { type: 'button', class: 'transfer' }), 'console.transfer');
    I.setAttr(trB, 'aria-label', 'console.transfer_label', nv);
    box.appendChild(trB);
    var leaveB = I.set(el('button', { type: 'button', class: 'leave', hidden: '' }), 'console.leave');
    I.setAttr(leaveB, 'aria-label', 'console.leave_label', nv);
    box.appendChild(leaveB);
    var c = { el: box, log: log, typing: typing, ta: ta, send: sendB, end: endB, transfer: trB, leave: leaveB, n: n, open: true, typingTimer: 0, lastTyping: 0 };
    c.support = supportControls(f.contact, id, box);
    chats[f.contact] = c;
    trB.addEventListener('click', function () { showTransfer(f.contact, lang); });
    leaveB.addEventListener('click', function () {
      leaveB.disabled = true;
      send({ type: 'leave', contact: f.contact });
    });

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
    note(c, f.from_centre ? 'console.note_connected_from' : 'console.note_connected', nv);
    announce('console.chat_open_announce', nv);
    if (focusHere) { ta.focus(); }
  }

  // ---- asking for support (a supervisor reads along and whispers) ----
  var SUPPORT_REASONS = ['', 'risk', 'abuse', 'unsure', 'tired'];

  function supportControls(contact, id, box) {
    var wrap = el('div', { class: 'support', 'data-state': '' });
    var lab = I.set(el('label', { for: id + '-reason' }), 'console.support_reason_label');
    var sel = el('select', { id: id + '-reason', class: 'support-reason' });
    SUPPORT_REASONS.forEach(function (r) {
      sel.appendChild(I.set(el('option', { value: r }), 'console.support_reason_' + (r || 'none')));
    });
    var ask = I.set(el('button', { type: 'button', class: 'ask-support' }), 'console.ask_support');
    var end = I.set(el('button', { type: 'button', class: 'end-support' }), 'console.end_support');
    end.hidden = true;
    // Once a supervisor reads along, the volunteer may hand the chat to
    // them (a warm transfer: both stay for a moment).
    var toSup = I.set(el('button', { type: 'button', class: 'to-supervisor' }), 'console.to_supervisor_plain');
    toSup.hidden = true;
    var state = el('p', { class: 'support-state', 'aria-live': 'polite' });
    wrap.appendChild(lab);
    wrap.appendChild(sel);
    wrap.appendChild(ask);
    wrap.appendChild(end);
    wrap.appendChild(toSup);
    wrap.appendChild(state);
    box.appendChild(wrap);
    ask.addEventListener('click', function () {
      var frame = { type: 'ask_support', contact: contact };
      if (sel.value) { frame.reason = sel.value; }
      ask.disabled = true;
      if (!send(frame)) { ask.disabled = false; }
    });
    end.addEventListener('click', function () { send({ type: 'end_support', contact: contact }); });
    toSup.addEventListener('click', function () {
      toSup.disabled = true;
      if (!send({ type: 'transfer', contact: contact, to: 'supervisor', warm: true })) { toSup.disabled = false; }
    });
    return { box: wrap, ask: ask, end: end, toSup: toSup, state: state, reason: sel };
  }

  function onSupport(f) {
    var c = chats[f.contact];
    if (!c || !c.support) { return; }
    var s = c.support;
    var vars = { supervisor: f.supervisor || '', centre: f.centre || '', reason: f.reason || '' };
    s.box.setAttribute('data-state', f.state);
    s.toSup.hidden = f.state !== 'coming';
    s.toSup.disabled = false;
    if (f.state === 'coming') { I.set(s.toSup, 'console.to_supervisor', vars); }
    switch (f.state) {
      case 'asked':
        say(s.state, f.centre ? 'console.support_asked_at' : 'console.support_asked', vars);
        s.ask.disabled = true;
        s.end.hidden = false; // a ringing request can be withdrawn
        break;
      case 'coming':
        say(s.state, f.centre ? 'console.support_coming_from' : 'console.support_coming', vars);
        announce('console.support_coming_announce', vars);
        s.ask.disabled = true;
        s.end.hidden = false;
        break;
      case 'unavailable':
        say(s.state, 'console.support_unavailable');
        s.ask.disabled = false;
        s.end.hidden = true;
        break;
      default: // over
        say(s.state, 'console.support_over', vars);
        s.ask.disabled = false;
        s.end.hidden = true;
    }
  }

  // supportRefused gives the Ask button back after a refused request
  // (slow_down, or a conversation that cannot be read along).
  function supportRefused(f) {
    var c = f.contact && chats[f.contact];
    if (!c || !c.support) { return; }
    var st = c.support.box.getAttribute('data-state');
    if (st !== 'asked' && st !== 'coming') { c.support.ask.disabled = false; }
  }

  // A supervisor's note: only this console ever shows it.
  function onWhisper(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    var p = el('p', { class: 'msg whisper', 'data-id': String(f.id) });
    p.appendChild(I.set(el('span', { class: 'whisper-from' }), 'console.whisper_from', { supervisor: f.supervisor || '' }));
    p.appendChild(document.createTextNode(' ' + String(f.text || '')));
    c.log.appendChild(p);
    c.log.scrollTop = c.log.scrollHeight;
    announce('console.whisper_announce', { supervisor: f.supervisor || '' });
  }

  // A call in progress: no message box (the talking is on the phone), a
  // timer, and a way to categorise should the hang-up never come through.
  function onCallConnected(f, lang, focusHere) {
    var n = Object.keys(chats).length + 1;
    var id = 'chat-' + f.contact;
    var box = el('section', { class: 'chat card call', 'data-contact': f.contact, 'data-channel': 'phone', 'aria-labelledby': id + '-t' });
    var head = el('header', { class: 'chat-head' });
    var nv = { n: n, language: lang, centre: f.from_centre || '' };
    head.appendChild(I.set(el('h3', { id: id + '-t' }), lang ? 'console.call_title_lang' : 'console.call_title', nv));
    if (f.from_centre) {
      head.appendChild(I.set(el('span', { class: 'badge badge-centre' }), 'console.from_centre', nv));
    }
    box.appendChild(head);
    var state = el('p', { class: 'call-state' });
    var what = I.set(el('span', { class: 'call-what' }), 'console.on_the_phone');
    var timer = I.setAttr(el('span', { class: 'call-timer' }, '0:00'), 'aria-label', 'console.call_length');
    state.appendChild(what);
    state.appendChild(document.createTextNode(' · '));
    state.appendChild(timer);
    box.appendChild(state);
    var log = I.setAttr(el('div', { class: 'messages call-log', role: 'log', 'aria-live': 'polite' }), 'aria-label', 'console.call_log_label', nv);
    box.appendChild(log);
    var browser = sp.contact === f.contact;
    if (browser) {
      I.set(what, 'console.in_browser_call');
      box.setAttribute('data-browser', 'true');
    }
    var endB = I.set(el('button', { type: 'button', class: 'end call-over' }), 'console.call_over');
    I.setAttr(endB, 'aria-label', 'console.call_over_label', nv);
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
      note(c, f.from_centre ? 'console.note_browser_connected_from' : 'console.note_browser_connected', nv);
    } else {
      note(c, f.from_centre ? 'console.note_phone_picked_up_from' : 'console.note_phone_picked_up', nv);
    }
    announce('console.call_connected_announce', nv);
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

  function note(c, key, vars) {
    c.log.appendChild(I.set(el('p', { class: 'msg note' }), key, vars));
    c.log.scrollTop = c.log.scrollHeight;
  }

  function addMsg(c, who, id, text) {
    var p = el('p', { class: 'msg ' + who });
    if (id) { p.setAttribute('data-id', id); }
    p.appendChild(I.set(el('span', { class: 'visually-hidden' }), who === 'visitor' ? 'console.from_visitor' : 'console.from_you'));
    p.appendChild(document.createTextNode(' '));
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
    say(c.typing);
    addMsg(c, 'visitor', f.id, f.text);
  }

  function onTyping(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    say(c.typing, 'console.visitor_typing');
    window.clearTimeout(c.typingTimer);
    c.typingTimer = window.setTimeout(function () { say(c.typing); }, 4000);
  }

  function onDelivered(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    var p = c.log.querySelector('.msg.volunteer[data-id="' + String(f.id).replace(/["\\]/g, '') + '"]');
    if (p) { p.classList.remove('pending'); p.classList.add('delivered'); }
  }

  function closeChat(c) {
    c.open = false;
    if (c.support) { c.support.box.hidden = true; }
    if (c.ta) { c.ta.disabled = true; }
    if (c.send) { c.send.disabled = true; }
    c.end.hidden = true;
    if (c.transfer) { c.transfer.hidden = true; }
    if (c.leave) { c.leave.hidden = true; }
    var tf = c.el.querySelector('.transfer-form');
    if (tf) { tf.remove(); }
    if (c.typing) { say(c.typing); }
    if (c.controls) { c.controls.hidden = true; }
    if (c.call && c.tick) {
      stopCallTimer(c);
      c.timerEl.textContent = callLength(c);
      I.set(c.what, 'console.call_over_length');
    }
  }

  var CALL_ENDED = {
    caller: 'console.ended_caller',
    volunteer: 'console.ended_volunteer',
    unanswered: 'console.ended_unanswered'
  };

  function onEnded(f) {
    endBrowserCall(f.contact);
    var c = chats[f.contact];
    if (!c) { return; }
    if (c.call) {
      var existing = c.el.querySelector('.categorise');
      closeChat(c);
      note(c, CALL_ENDED[f.by] || 'console.ended_call');
      announce('console.call_ended_announce', { n: c.n });
      // A form opened while the call was live now only saves.
      if (existing) { existing.remove(); }
      showCategorise(f.contact, true);
      return;
    }
    if (f.by === 'transferred') { onHandedOver(f.contact, c); return; }
    closeChat(c);
    note(c, 'console.visitor_left');
    announce('console.visitor_left_announce', { n: c.n });
    showCategorise(f.contact, true);
  }

  // ---- transfer (issue 16) ----

  // showTransfer opens the transfer form of a conversation: to a
  // volunteer here or at another centre, in a language, warm or cold,
  // with a handover note only the new volunteer sees.
  function showTransfer(contact, lang) {
    var c = chats[contact];
    if (!c || !c.open) { return; }
    var existing = c.el.querySelector('.transfer-form');
    if (existing) { existing.querySelector('select').focus(); return; }
    var fid = 'tr-' + contact;
    var form = el('form', { class: 'transfer-form', 'aria-labelledby': fid + '-t' });
    form.appendChild(I.set(el('h4', { id: fid + '-t' }), 'console.transfer_title', { n: c.n }));
    form.appendChild(I.set(el('label', { for: fid + '-centre' }), 'console.transfer_to'));
    var sel = el('select', { id: fid + '-centre', name: 'centre' });
    sel.appendChild(I.set(el('option', { value: '' }), 'console.transfer_own_centre'));
    policy.centres.forEach(function (ce) { sel.appendChild(el('option', { value: ce.id }, ce.name || ce.id)); });
    form.appendChild(sel);
    form.appendChild(I.set(el('label', { for: fid + '-lang' }), 'console.transfer_language'));
    var lsel = el('select', { id: fid + '-lang', name: 'language' });
    (policy.languages.length ? policy.languages : [lang]).forEach(function (l) {
      var o = el('option', { value: l }, l);
      if (l === lang) { o.selected = true; }
      lsel.appendChild(o);
    });
    form.appendChild(lsel);
    var wl = el('label', { class: 'check' });
    var warm = el('input', { type: 'checkbox', name: 'warm', id: fid + '-warm' });
    warm.checked = true;
    wl.appendChild(warm);
    wl.appendChild(document.createTextNode(' '));
    wl.appendChild(I.set(el('span'), 'console.transfer_warm'));
    form.appendChild(wl);
    form.appendChild(I.set(el('label', { for: fid + '-note' }), 'console.transfer_note'));
    var noteTa = el('textarea', { id: fid + '-note', name: 'note', rows: '3', maxlength: '1000' });
    form.appendChild(noteTa);
    var actions = el('div', { class: 'actions' });
    var ask = I.set(el('button', { type: 'submit', class: 'transfer-ask' }), 'console.transfer_send');
    var cancel = I.set(el('button', { type: 'button', class: 'cancel' }), 'console.back_to_chat');
    actions.appendChild(ask);
    actions.appendChild(cancel);
    form.appendChild(actions);
    cancel.addEventListener('click', function () { form.remove(); c.transfer.focus(); });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var frame = { type: 'transfer', contact: contact, warm: warm.checked };
      if (sel.value) { frame.centre = sel.value; }
      if (lsel.value && lsel.value !== lang) { frame.language = lsel.value; }
      // The note is cut to 1000 bytes of UTF-8, the server's limit.
      var text = noteTa.value.trim();
      while (new TextEncoder().encode(text).length > 1000) { text = text.slice(0, -1); }
      if (text) { frame.note = text; }
      if (send(frame)) {
        form.remove();
        c.transfer.disabled = true;
        note(c, 'console.transfer_asked');
        announce('console.transfer_asked');
      }
    });
    c.el.insertBefore(form, c.end);
    sel.focus();
  }

  function onTransferAccepted(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    var v = { alias: f.alias || '' };
    c.handedOver = true;
    c.transfer.hidden = true;
    if (f.warm) {
      // Both are in the conversation for a moment: say goodbye, then leave
      // (ending is leaving now: the new volunteer categorises).
      c.end.hidden = true;
      c.leave.hidden = false;
      note(c, 'console.transfer_accepted_warm', v);
      announce('console.transfer_accepted_warm', v);
    } else {
      note(c, 'console.transfer_accepted_cold', v);
      announce('console.transfer_accepted_cold', v);
    }
  }

  function onTransferFailed(f) {
    var c = chats[f.contact];
    if (!c) { return; }
    var v = { reason: f.reason || '' };
    c.handedOver = false;
    if (c.open) {
      c.transfer.hidden = false;
      c.transfer.disabled = false;
      c.end.hidden = false;
      c.leave.hidden = true;
      c.leave.disabled = false;
    }
    note(c, 'console.transfer_failed', v);
    announce('console.transfer_failed', v);
  }

  // onHandedOver: the volunteer's side of a conversation they handed over
  // ended; there is nothing to categorise.
  function onHandedOver(contact, c) {
    closeChat(c);
    note(c, 'console.handed_over');
    announce('console.handed_over');
    var box = el('div', { class: 'handed-over' });
    var b = I.set(el('button', { type: 'button', class: 'dismiss' }), 'console.close_chat');
    b.addEventListener('click', function () { removeChat(contact); });
    box.appendChild(b);
    c.el.appendChild(box);
  }

  function onLost(f) {
    endBrowserCall(f.contact);
    var c = chats[f.contact];
    if (!c) { return; }
    closeChat(c);
    var form = c.el.querySelector('.categorise');
    if (form) { form.remove(); }
    var box = el('div', { class: 'lost', role: 'alert' });
    box.appendChild(I.set(el('p'), f.undelivered > 0 ? 'console.lost_undelivered' : 'console.lost', { count: f.undelivered }));
    var b = I.set(el('button', { type: 'button', class: 'dismiss' }), 'console.close_chat');
    b.addEventListener('click', function () { removeChat(f.contact); });
    box.appendChild(b);
    c.el.appendChild(box);
  }

  // Resumed conversations: the visitor's centre was lost and their page is
  // reconnecting to this one; the volunteer may keep writing meanwhile.
  function onReconnecting(f) {
    var c = chats[f.contact];
    if (!c || c.reconnecting) { return; }
    c.reconnecting = I.set(el('p', { class: 'reconnecting', role: 'status' }), 'console.reconnecting');
    c.el.insertBefore(c.reconnecting, c.log);
  }

  // onResumed clears the notice: the visitor is back, or (gone) lost.
  function onResumed(f, gone) {
    var c = chats[f.contact];
    if (!c || !c.reconnecting) { return; }
    c.reconnecting.remove();
    c.reconnecting = null;
    if (!gone) { note(c, 'console.note_resumed'); }
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
    form.appendChild(I.set(el('h4', { id: fid + '-t' }), c.call ? 'console.categorise_call' : 'console.categorise_chat', { n: c.n }));
    var fs = el('fieldset', { class: 'topics' });
    fs.appendChild(I.set(el('legend'), 'console.topics_legend'));
    policy.topics.forEach(function (topic, i) {
      var lab = el('label', { class: 'topic' });
      var cb = el('input', { type: 'checkbox', name: 'topic', value: topic, id: fid + '-topic-' + i });
      lab.appendChild(cb);
      lab.appendChild(document.createTextNode(' '));
      lab.appendChild(I.setLabel(el('span', { class: 'topic-name' }), 'topic', topic));
      fs.appendChild(lab);
    });
    form.appendChild(fs);
    var al = I.set(el('label', { for: fid + '-age' }), 'console.age_group');
    var sel = el('select', { id: fid + '-age', class: 'age-group' });
    policy.age_groups.forEach(function (g) { sel.appendChild(I.setLabel(el('option', { value: g }), 'age', g)); });
    form.appendChild(al);
    form.appendChild(sel);
    var err = el('p', { class: 'error', role: 'alert' });
    form.appendChild(err);
    var actions = el('div', { class: 'actions' });
    var submit = I.set(el('button', { type: 'submit', class: 'submit-categorisation' }), visitorEnded ? 'console.save_categorisation' :
      (c.call ? 'console.save_call_over' : 'console.end_and_save'));
    actions.appendChild(submit);
    if (!visitorEnded) {
      var cancel = I.set(el('button', { type: 'button', class: 'cancel-end' }), c.call ? 'console.back_to_call' : 'console.back_to_chat');
      cancel.addEventListener('click', function () { form.remove(); (c.ta || c.end).focus(); });
      actions.appendChild(cancel);
    }
    form.appendChild(actions);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var topics = Array.prototype.map.call(form.querySelectorAll('input[name=topic]:checked'), function (x) { return x.value; });
      if (topics.length < 1 || topics.length > 8) {
        say(err, 'console.choose_topics');
        var first = form.querySelector('input[name=topic]');
        if (first) { first.focus(); }
        return;
      }
      say(err);
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
    removeChat(f.contact);
    status(c && c.call ? 'console.call_categorised' : 'console.chat_categorised', { n: n });
  }

  function onError(f) {
    var text = f.error || f.code || 'error';
    if (SOFTPHONE_ERRORS[f.code]) { onSoftphoneError(f, text); return; }
    if (f.code === 'bad_phone' || f.code === 'no_phone') {
      // The phone box was ticked but nothing changed at the centre.
      if (lastAvailability) { onAvailability(lastAvailability); }
      if (f.code === 'no_phone') { say($('#phone-error'), 'console.give_phone_first'); } else { say($('#phone-error'), 'console.phone_refused', { error: text }); }
      $('#phone').focus();
      return;
    }
    var o = f.contact && offers[f.contact];
    if (o && o.browser && f.code === 'offer_gone') {
      say(o.problem, 'console.too_late_here');
      o.decline.hidden = true;
      return;
    }
    if (o && o.channel === 'phone' && f.code === 'offer_gone') {
      // Too late to decline: the call reached the phone, which decides.
      if (/ringing on your phone/.test(text)) { say(o.problem, 'console.ringing_on_phone'); } else { say(o.problem, 'console.too_late', { error: text }); }
      o.decline.hidden = true;
      return;
    }
    if (f.contact && chats[f.contact]) {
      var c = chats[f.contact];
      var form = c.el.querySelector('.categorise');
      if (form) {
        say(form.querySelector('.error'), 'common.server_error', { error: text });
        var b = form.querySelector('.submit-categorisation');
        if (b) { b.disabled = false; }
        return;
      }
      if (f.id) {
        var p = c.log.querySelector('.msg.volunteer[data-id="' + String(f.id).replace(/["\\]/g, '') + '"]');
        if (p) { p.classList.add('failed'); }
      }
      note(c, 'console.not_sent', { error: text });
      return;
    }
    if (f.contact && offers[f.contact]) {
      removeOffer(f.contact);
    }
    status('console.problem', { error: text });
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
      return Promise.reject(new Error(t('console.mic_needs_https')));
    }
    var p = sp.processing, gen = micGen;
    micPending = navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: p, noiseSuppression: p, autoGainControl: p } })
      .then(function (stream) {
        micPending = null;
        if (gen !== micGen) {
          stream.getTracks().forEach(function (t) { t.stop(); });
          throw new Error(t('console.browser_phone_off'));
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

  // micError shows in box why the microphone could not be opened.
  function micError(box, e) {
    var name = e && e.name;
    if (name === 'NotAllowedError' || name === 'SecurityError') { say(box, 'console.mic_blocked'); return; }
    if (name === 'NotFoundError' || name === 'OverconstrainedError') { say(box, 'console.mic_not_found'); return; }
    if (name === 'NotReadableError') { say(box, 'console.mic_in_use'); return; }
    say(box, 'console.mic_failed', { error: String((e && e.message) || e) });
  }

  $('#phone-browser').addEventListener('change', function (ev) {
    var box = ev.target;
    sp.micAsked = true;
    say($('#phone-error'));
    unlockAudio();
    if (!box.checked) {
      stopMic();
      send({ type: 'phone', phone: '' });
      return;
    }
    status('console.mic_asking');
    getMic().then(function () {
      if (!box.checked) { return; } // switched off while the browser asked
      if (!send({ type: 'phone', phone: 'browser' })) { box.checked = false; }
    }).catch(function (e) {
      if (!box.checked) { return; } // switched off meanwhile: nothing to say
      box.checked = false;
      micError($('#phone-error'), e);
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
    var what = { language: f.language, centre: f.from_centre || '' };
    var box = offerBox(f, { class: 'offer offer-phone', 'data-channel': 'phone', 'data-browser': 'true' },
      f.from_centre ? 'console.browser_offer_title_from' : 'console.browser_offer_title', what);
    box.appendChild(I.set(el('p', { class: 'phone-note' }), 'console.answer_here'));
    var problem = el('p', { class: 'phone-problem', role: 'status' });
    box.appendChild(problem);
    var actions = el('div', { class: 'actions' });
    var acc = cardButton('accept answer-call', 'console.answer', f.from_centre ? 'console.answer_call_label_from' : 'console.answer_call_label', what);
    var dec = cardButton('decline', 'console.decline', f.from_centre ? 'console.decline_call_label_from' : 'console.decline_call_label', what);
    acc.addEventListener('click', function () {
      acc.disabled = true; dec.disabled = true;
      stopRing();
      say(problem, 'console.connecting');
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
    announce(f.from_centre ? 'console.browser_offer_announce_from' : 'console.browser_offer_announce', what, urgentKey(f));
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
        if (pc.connectionState === 'failed' && c) { note(c, 'console.voice_failed'); }
        if (pc.connectionState === 'disconnected' && c) { note(c, 'console.voice_interrupted'); }
      };
      stream.getAudioTracks().forEach(function (t) { t.enabled = !sp.muted; pc.addTrack(t, stream); });
      return pc.createOffer();
    }).then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return iceDone(pc); })
      .then(function () {
        if (sp.pc !== pc) { return; }
        if (!send({ type: 'answer_call', contact: contact, sdp: pc.localDescription.sdp })) { throw new Error(t('console.not_connected')); }
      }).catch(function (e) {
        if (sp.contact !== contact) { return; }
        endBrowserCall(contact);
        var o = offers[contact];
        var box = o ? o.problem : $('#status');
        if (e && e.name && e.name !== 'Error') { micError(box, e); } else { say(box, 'console.call_could_not_start', { error: String((e && e.message) || e) }); }
        if (o) { o.accept.disabled = false; o.decline.disabled = false; }
      });
  }

  function onCallMedia(f) {
    var pc = sp.pc;
    if (!pc || sp.contact !== f.contact) { return; }
    pc.setRemoteDescription({ type: 'answer', sdp: f.sdp }).catch(function (e) {
      if (sp.pc !== pc) { return; }
      var c = chats[f.contact];
      var v = { error: String(e.message) };
      if (c) { note(c, 'console.answer_unusable', v); } else if (offers[f.contact]) { say(offers[f.contact].problem, 'console.answer_unusable', v); }
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
    var nv = { n: c.n };
    var mute = I.set(el('button', { type: 'button', class: 'mute', 'aria-pressed': sp.muted ? 'true' : 'false' }), sp.muted ? 'console.unmute' : 'console.mute', nv);
    var hang = I.set(el('button', { type: 'button', class: 'hang-up' }), 'console.hang_up', nv);
    I.setAttr(mute, 'aria-label', 'console.mute_label');
    I.setAttr(hang, 'aria-label', 'console.hang_up_label');
    mute.addEventListener('click', function () {
      sp.muted = !sp.muted;
      if (sp.stream) { sp.stream.getAudioTracks().forEach(function (t) { t.enabled = !sp.muted; }); }
      I.set(mute, sp.muted ? 'console.unmute' : 'console.mute', nv);
      mute.setAttribute('aria-pressed', sp.muted ? 'true' : 'false');
      box.classList.toggle('muted', sp.muted);
      note(c, sp.muted ? 'console.muted_note' : 'console.unmuted_note');
    });
    hang.addEventListener('click', function () {
      hang.disabled = true;
      if (!send({ type: 'hang_up', contact: contact })) { hang.disabled = false; return; }
      endBrowserCall(contact);
      note(c, 'console.you_hung_up');
    });
    row.appendChild(mute);
    row.appendChild(hang);
    box.insertBefore(row, log);
    c.controls = row;
  }

  function onSoftphoneError(f, text) {
    if (f.code === 'no_softphone') {
      $('#phone-browser').checked = false;
      say($('#phone-error'), 'console.no_browser_phone');
      return;
    }
    var key = 'console.sp_' + f.code; // sp_no_call, sp_bad_sdp, sp_call_failed, sp_busy
    var v = { error: text };
    if (f.code !== 'busy') { endBrowserCall(f.contact); }
    var o = f.contact && offers[f.contact];
    if (o && o.browser) {
      say(o.problem, key, v);
      o.accept.disabled = f.code === 'no_call';
      o.decline.disabled = false;
      return;
    }
    var c = f.contact && chats[f.contact];
    if (c) { note(c, key, v); return; }
    status('console.problem', { error: t(key, v) });
  }

  // capture records what the browser hears (the remote track) at 8 kHz,
  // for tests: the track must also play in an <audio> element for
  // MediaStreamTrackProcessor to get samples, and the rate changes mid-track
  // (48 kHz silence before RTP, then the codec's), so each chunk is
  // brought to 8 kHz by its own rate.
  var capture = (function () {
    var on = false, current = null, reader = null, chunks = [], frames = 0, rates = {}, t0 = -1;
    function run(track) {
      if (typeof MediaStreamTrackProcessor === 'undefined') { return; }
      var rd = new MediaStreamTrackProcessor({ track: track }).readable.getReader();
      reader = rd;
      var pump = function () {
        rd.read().then(function (r) {
          if (r.done || reader !== rd) { if (r.value) { r.value.close(); } return; }
          var v = r.value, rate = v.sampleRate, stamp = v.timestamp;
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
          if (on) {
            // Place the chunk by its timestamp, not after the last one: when
            // this page's thread is starved the processor drops chunks, and
            // appending would pull everything after a gap earlier in time.
            if (t0 < 0) { t0 = stamp - frames * 1000 / 8; }
            var at = Math.round((stamp - t0) * 8 / 1000);
            var gap = at - frames;
            if (gap > 0 && gap < 8000 * 10) { chunks.push(new Float32Array(gap)); frames += gap; }
            chunks.push(buf); frames += buf.length;
          }
          pump();
        }).catch(function () { /* the track ended */ });
      };
      pump();
    }
    function restart() {
      t0 = -1; // a new track counts time from its own start
      if (reader) { reader.cancel().catch(function () {}); reader = null; }
      if (on && current) { run(current); }
    }
    return {
      track: function (t) { current = t; restart(); },
      api: {
        start: function () { on = true; chunks = []; frames = 0; rates = {}; t0 = -1; restart(); },
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
  I.info.then(function (info) {
    if (info && info.name) { $('#centre-name').textContent = info.name; I.set($('title'), 'console.doc_title', { centre: info.name }); }
  });
  // A session cookie may still be valid (reload): try the console quietly.
  openConsole(false);
})();
