// helpmesh volunteer enrolment: the volunteer opens the link staff sent,
// /enrol#v=ID&c=CODE, sets a password and lands in the console. The id and
// code are in the fragment, which the browser never sends: they reach no
// server log and no Referer. Plain JavaScript, no inline script (CSP).
// Every text goes through the staff pages' catalogue helper
// (static/i18n.js, window.I18N): keys enrol.* and common.*.
(function () {
  'use strict';

  var I = window.I18N;

  var P = window.HelpmeshPassword; // static/password.js: the rules and the meter

  var $ = function (sel) { return document.querySelector(sel); };
  var params = new URLSearchParams(location.hash.replace(/^#/, ''));
  var fromLink = !!(params.get('v') && params.get('c'));
  var code = params.get('c') || '';
  var done = false; // the password is set: the form is spent
  window.helpmeshEnrolLoadedAt = Date.now();

  // Out of the address bar and history at once: the code is a password
  // until it is used.
  if (location.hash) { history.replaceState(null, '', location.pathname); }

  I.set($('#rules'), 'common.pw_rules', { min: P.MIN_CHARS, max: P.MAX_BYTES });
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

  function showStrength() {
    return P.show($('#password').value, $('#strength-bar'), $('#strength-text'));
  }
  $('#password').addEventListener('input', showStrength);

  // say shows t(key, vars) in el, through language switches; no key clears el.
  var say = I.say;

  function error(key, vars) {
    say($('#enrol-error'), key, vars);
    say($('#enrol-status'));
  }

  function readError(r) {
    return r.json().catch(function () { return {}; }).then(function (b) { return b || {}; });
  }

  // later refuses with key (…{when}) and the server's Retry-After.
  function later(r, key) {
    var after = r.headers.get('Retry-After');
    error(key, { when: after ? { t: 'enrol.in_seconds', vars: { seconds: after } } : { t: 'enrol.later' } });
  }

  $('#enrol').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var id = $('#volunteer').value.trim();
    if (!fromLink) { code = $('#code').value.trim(); }
    var pw = $('#password').value;
    var s = showStrength();
    if (!id || !code) { error('enrol.need_id_code'); return; }
    if (!s.ok) {
      if (s.refusal) { error(s.refusal, s.vars); } else { error('enrol.not_set', { why: { t: s.key, vars: s.vars } }); }
      $('#password').focus();
      return;
    }
    if (pw !== $('#repeat').value) { error('common.pw_not_same'); $('#repeat').focus(); return; }
    error();
    $('#enrol-submit').disabled = true;
    say($('#enrol-status'), 'enrol.setting');
    var post = function (path, body) {
      return fetch(path, {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
      });
    };
    post('/v1/volunteer/enrol', { volunteer: id, code: code, password: pw }).then(function (r) {
      if (r.status === 204) {
        say($('#enrol-status'), 'enrol.set_logging_in');
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
          error();
          $('#enrol-done').hidden = false;
        });
      }
      return readError(r).then(function (b) {
        switch (r.status) {
        case 401:
          error('enrol.link_wrong');
          break;
        case 400:
          error(b.code === 'bad_password' ? 'enrol.password_refused' : 'enrol.request_refused', { error: b.error || 'HTTP 400' });
          break;
        case 429:
          later(r, 'enrol.too_many');
          break;
        case 503:
          later(r, 'enrol.busy');
          break;
        default:
          error(b.error ? 'enrol.not_set_http_error' : 'enrol.not_set_http', { status: r.status, error: b.error || '' });
        }
      });
    }).catch(function () {
      error('common.unreachable');
    }).then(function () { $('#enrol-submit').disabled = done; });
  });

  I.info.then(function (info) {
    if (info && info.name) { $('#centre-name').textContent = info.name; I.set($('title'), 'enrol.doc_title', { centre: info.name }); }
  });
  $(fromLink ? '#password' : '#volunteer').focus();
})();
