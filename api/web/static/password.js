// helpmesh password rules and strength meter, shared by the enrolment page
// (a first password) and the console (a volunteer changing theirs). Plain
// JavaScript, no build step, no inline script (CSP). Load it after
// static/i18n.js and before the page's own script. Its texts are the
// catalogue's common.pw_* keys.
//
// window.HelpmeshPassword:
//   MIN_CHARS, MAX_BYTES   the server's rules
//   strength(pw)           {level, ok, key, vars, refusal}: level is weak,
//                          fair, good or strong; ok is whether the pages
//                          let it be sent; key/vars the meter's words
//   show(pw, bar, text)    shows strength(pw) in a meter bar and its text
//                          (both get data-level) and returns it
(function () {
  'use strict';

  var I = window.I18N;

  // The server's rules (api/volunteers.go: minPasswordRunes,
  // maxPasswordBytes; a test keeps them equal). The server stays the
  // authority: these only spare the volunteer a round trip.
  var MIN_CHARS = 10;
  var MAX_BYTES = 256;

  // strength rates a password by its length and the variety of its
  // characters: a rough estimate of the bits an attacker must guess, with
  // repeated characters counted as little. No dictionary: the meter nudges,
  // it does not promise.
  function strength(pw) {
    var chars = Array.from(pw);
    var bytes = new TextEncoder().encode(pw).length;
    if (chars.length < MIN_CHARS) {
      return { level: 'weak', ok: false, key: 'common.pw_weak_short', vars: { n: chars.length, min: MIN_CHARS },
        refusal: 'common.pw_refused_short' };
    }
    if (bytes > MAX_BYTES) {
      return { level: 'weak', ok: false, key: 'common.pw_too_long', vars: { max: MAX_BYTES } };
    }
    var pool = 0;
    if (/[a-z]/.test(pw)) { pool += 26; }
    if (/[A-Z]/.test(pw)) { pool += 26; }
    if (/[0-9]/.test(pw)) { pool += 10; }
    if (/[^a-zA-Z0-9]/.test(pw)) { pool += 33; }
    var unique = new Set(chars).size;
    var bits = Math.min(chars.length, unique * 2) * Math.log2(Math.max(pool, 2));
    if (bits < 40) {
      return { level: 'weak', ok: false, key: 'common.pw_weak_guess' };
    }
    if (bits < 60) { return { level: 'fair', ok: true, key: 'common.pw_fair' }; }
    if (bits < 80) { return { level: 'good', ok: true, key: 'common.pw_good' }; }
    return { level: 'strong', ok: true, key: 'common.pw_strong' };
  }

  function show(pw, bar, text) {
    var s = strength(pw);
    bar.setAttribute('data-level', pw ? s.level : '');
    text.setAttribute('data-level', pw ? s.level : '');
    if (pw) {
      I.set(text, s.key, s.vars);
    } else {
      text.removeAttribute('data-i18n');
      text.removeAttribute('data-i18n-vars');
      text.textContent = '';
    }
    return s;
  }

  window.HelpmeshPassword = { MIN_CHARS: MIN_CHARS, MAX_BYTES: MAX_BYTES, strength: strength, show: show };
})();
