// helpmesh volunteer enrolment: the volunteer opens the link staff sent,
// /enrol#v=ID&c=CODE, sets a password and lands in the console. The id and
// code are in the fragment, which the browser never sends: they reach no
// server log and no Referer. Plain JavaScript, no inline script (CSP).
(function () {
  'use strict';

  // The server's rules (api/volunteers.go: minPasswordRunes,
  // maxPasswordBytes; a test keeps them equal). The server stays the
  // authority: these only spare the volunteer a round trip.
  var MIN_CHARS = 10;
  var MAX_BYTES = 256;

  var $ = function (sel) { return document.querySelector(sel); };
  var params = new URLSearchParams(location.hash.replace(/^#/, ''));
  var fromLink = !!(params.get('v') && params.get('c'));
  var code = params.get('c') || '';
  var done = false; // the password is set: the form is spent
  window.helpmeshEnrolLoadedAt = Date.now();

  // Out of the address bar and history at once: the code is a password
  // until it is used.
  if (location.hash) { history.replaceState(null, '', location.pathname); }

  $('#min-chars').textContent = String(MIN_CHARS);
  $('#volunteer').value = params.get('v') || '';
  if (fromLink) {
    $('#volunteer-shown').textContent = params.get('v');
    $('#for-volunteer').hidden = false;
  } else {
    $('#manual').hidden = false;
    $('#volunteer-label').hidden = false;
    $('#volunteer').hidden = false;
    $('#code').value = code;
  }

  // strength rates a password by its length and the variety of its
  // characters: a rough estimate of the bits an attacker must guess, with
  // repeated characters counted as little. No dictionary: the meter nudges,
  // it does not promise.
  function strength(pw) {
    var chars = Array.from(pw);
    var bytes = new TextEncoder().encode(pw).length;
    if (chars.length < MIN_CHARS) {
      return { level: 'weak', ok: false, text: 'Weak: too short (' + chars.length + ' of at least ' + MIN_CHARS + ' characters).',
        refusal: 'Not set: the password needs at least ' + MIN_CHARS + ' characters.' };
    }
    if (bytes > MAX_BYTES) {
      return { level: 'weak', ok: false, text: 'Too long: at most ' + MAX_BYTES + ' bytes.' };
    }
    var pool = 0;
    if (/[a-z]/.test(pw)) { pool += 26; }
    if (/[A-Z]/.test(pw)) { pool += 26; }
    if (/[0-9]/.test(pw)) { pool += 10; }
    if (/[^a-zA-Z0-9]/.test(pw)) { pool += 33; }
    var unique = new Set(chars).size;
    var bits = Math.min(chars.length, unique * 2) * Math.log2(Math.max(pool, 2));
    if (bits < 40) {
      return { level: 'weak', ok: false, text: 'Weak: easy to guess. Make it longer, or mix words, digits and symbols.' };
    }
    if (bits < 60) { return { level: 'fair', ok: true, text: 'Fair. A few more characters make it stronger.' }; }
    if (bits < 80) { return { level: 'good', ok: true, text: 'Good.' }; }
    return { level: 'strong', ok: true, text: 'Strong.' };
  }

  function showStrength() {
    var pw = $('#password').value;
    var s = strength(pw);
    var bar = $('#strength-bar');
    var text = $('#strength-text');
    bar.setAttribute('data-level', pw ? s.level : '');
    text.setAttribute('data-level', pw ? s.level : '');
    text.textContent = pw ? s.text : '';
    return s;
  }
  $('#password').addEventListener('input', showStrength);

  function error(msg) {
    $('#enrol-error').textContent = msg;
    $('#enrol-status').textContent = '';
  }

  function readError(r) {
    return r.json().catch(function () { return {}; }).then(function (b) { return b || {}; });
  }

  function seconds(r) {
    var after = r.headers.get('Retry-After');
    return after ? ' in ' + after + ' seconds' : ' later';
  }

  $('#enrol').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var id = $('#volunteer').value.trim();
    if (!fromLink) { code = $('#code').value.trim(); }
    var pw = $('#password').value;
    var s = showStrength();
    if (!id || !code) { error('This page needs your volunteer id and enrolment code: open the link your centre sent you.'); return; }
    if (!s.ok) { error(s.refusal || 'Not set: ' + s.text); $('#password').focus(); return; }
    if (pw !== $('#repeat').value) { error('The two passwords are not the same.'); $('#repeat').focus(); return; }
    error('');
    $('#enrol-submit').disabled = true;
    $('#enrol-status').textContent = 'Setting your password…';
    var post = function (path, body) {
      return fetch(path, {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
      });
    };
    post('/v1/volunteer/enrol', { volunteer: id, code: code, password: pw }).then(function (r) {
      if (r.status === 204) {
        $('#enrol-status').textContent = 'Your password is set. Logging in…';
        return post('/v1/volunteer/login', { volunteer: id, password: pw }).then(function (l) {
          if (l.status === 204) {
            $('#password').value = '';
            $('#repeat').value = '';
            done = true;
            location.replace('/console');
            return;
          }
          // The password is set and the code used up: only the login failed.
          done = true;
          $('#enrol').querySelectorAll('input, button').forEach(function (e) { e.disabled = true; });
          error('');
          $('#enrol-done').hidden = false;
        });
      }
      return readError(r).then(function (b) {
        switch (r.status) {
        case 401:
          error('This enrolment link is wrong, already used or expired. Ask your centre for a new one.');
          break;
        case 400:
          error(b.code === 'bad_password' ? 'The centre refused this password: ' + b.error : 'The request was refused: ' + (b.error || 'HTTP 400'));
          break;
        case 429:
          error('Too many attempts. Try again' + seconds(r) + '.');
          break;
        case 503:
          error('The centre is busy. Try again' + seconds(r) + '.');
          break;
        default:
          error('Your password could not be set (HTTP ' + r.status + ')' + (b.error ? ': ' + b.error : '.'));
        }
      });
    }).catch(function () {
      error('Cannot reach the centre. Check the connection and try again.');
    }).then(function () { $('#enrol-submit').disabled = done; });
  });

  fetch('/v1/info', { credentials: 'same-origin' }).then(function (r) { return r.ok ? r.json() : null; })
    .then(function (info) {
      if (info && info.name) { $('#centre-name').textContent = info.name; document.title = 'Set your password · ' + info.name; }
    }).catch(function () {});
  $(fromLink ? '#password' : '#volunteer').focus();
})();
