// helpmesh staff pages' texts (console, overview, enrolment): one helper,
// plain JavaScript, no build step, no inline script (CSP). Load it before
// the page's own script:
//
//   <script src="/static/i18n.js" defer></script>
//   <script src="/static/console.js" defer></script>
//
// Catalogues are flat JSON, key -> text with {placeholders}, served at
// /i18n/staff/LL.json (api/web/i18n/staff/, plus a centre's own
// <data dir>/i18n/staff/LL.json); the languages come from the server's
// manifest /i18n/languages.json, so a centre's added catalogue appears in
// the picker. Keys beginning with "_" are notes (_language, _review,
// _machine_made), never shown.
//
// In static HTML:
//   data-i18n="key"                       the element's text is t(key, vars)
//   data-i18n-attr="attr:key;attr2:key2"  attributes (aria-label, placeholder, title…)
//   data-i18n-vars='{"n": 3}'             vars for both, as JSON; a var that is
//                                         {"t": "key"} is itself translated
//   data-i18n-label="topic:ID"            the element's text is label('topic', ID)
//   <span data-i18n-switcher></span>      where the language picker (label and
//                                         select#lang) goes
// The English text in the HTML is only what shows before the catalogue
// arrives; the catalogue's text replaces it.
//
// In JavaScript (window.I18N):
//   I18N.t(key, vars)          the text now; a missing key is recorded in
//                              window.i18nMissing ("lang:key") and shows the
//                              English text, else the key
//   I18N.set(el, key, vars)    sets el's data-i18n(-vars) and its text; returns
//                              el. Use it for every text the page builds, so a
//                              language switch re-renders it
//   I18N.setAttr(el, attr, key, vars)  the same for one attribute
//   I18N.say(el, key, vars)    el shows t(key, vars) through language switches;
//                              no key clears el (text and data-i18n)
//   I18N.el(tag, attrs, text)  a new element with attrs ('class' sets
//                              className) and text (none when null or
//                              undefined): the staff pages' one DOM builder
//   I18N.label(kind, id)       'topic' or 'age': the catalogue's topic.<id> /
//                              age.<id>, else a readable form of id (never
//                              recorded as missing: topics come from the policy)
//   I18N.setLabel(el, kind, id)  el shows label(kind, id), re-rendered on a switch
//   I18N.emergencyName(e)      an emergency number's name in the page's
//                              language: e.names[lang], else e.name
//   I18N.lang()                the page's language code
//   I18N.onChange(fn)          fn(lang) after each catalogue is applied
//   I18N.use(code)             switch language (remembered in localStorage)
//   I18N.ready                 a promise, resolved once the first catalogue is in
//   I18N.info                  a promise of GET /v1/info (null on failure)
//
// The first language: the one chosen before (localStorage
// "helpmesh.staff.lang"), else the browser's first language the server
// has, else the policy's first language, else en. Once applied, <html>
// gets lang= and data-lang-loaded= (tests wait on it).
(function () {
  'use strict';

  var STORE = 'helpmesh.staff.lang';
  var has = function (o, k) { return !!o && Object.prototype.hasOwnProperty.call(o, k); };
  var cat = {};        // the current catalogue
  var en = {};         // English, for keys the current one lacks
  var lang = '';       // '' until the first catalogue is in
  var langs = [];      // [{code, name, machine_made}] from the manifest
  var listeners = [];
  var loadGen = 0;
  window.i18nMissing = [];

  function getJSON(url) {
    return fetch(url, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) { throw new Error(url + ': HTTP ' + r.status); } return r.json(); });
  }

  var info = getJSON('/v1/info').catch(function () { return null; });
  var manifest = getJSON('/i18n/languages.json').then(function (m) {
    langs = (m && m.staff) || [];
    return langs;
  }).catch(function () { langs = [{ code: 'en', name: 'English' }]; return langs; });

  function fill(s, vars) {
    if (!vars) { return s; }
    return s.replace(/\{(\w+)\}/g, function (m, name) {
      if (!has(vars, name)) { return m; }
      var v = vars[name];
      if (v && typeof v === 'object' && typeof v.t === 'string') { return t(v.t, v.vars); }
      return String(v);
    });
  }

  function t(key, vars) {
    if (has(cat, key)) { return fill(cat[key], vars); }
    if (lang) {
      var m = lang + ':' + key;
      if (window.i18nMissing.indexOf(m) < 0) { window.i18nMissing.push(m); }
    }
    return fill(has(en, key) ? en[key] : key, vars);
  }

  function readable(id) {
    var s = String(id).replace(/^(\d+)-(\d+)$/, '$1–$2').replace(/[-_]+/g, ' ').trim();
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  function label(kind, id) {
    var key = kind + '.' + id;
    if (has(cat, key)) { return cat[key]; }
    if (has(en, key)) { return en[key]; }
    return readable(id);
  }

  function varsOf(el) {
    var v = el.getAttribute('data-i18n-vars');
    if (!v) { return null; }
    try { return JSON.parse(v); } catch (e) { return null; }
  }

  function render(el) {
    var lab = el.getAttribute('data-i18n-label');
    if (lab) {
      var c = lab.indexOf(':');
      el.textContent = label(lab.slice(0, c), lab.slice(c + 1));
      return;
    }
    var vars = varsOf(el);
    var key = el.getAttribute('data-i18n');
    if (key) { el.textContent = t(key, vars); }
    var attrs = el.getAttribute('data-i18n-attr');
    if (attrs) {
      attrs.split(';').forEach(function (pair) {
        var i = pair.indexOf(':');
        if (i > 0) { el.setAttribute(pair.slice(0, i).trim(), t(pair.slice(i + 1).trim(), vars)); }
      });
    }
  }

  function apply(root) {
    root = root || document;
    var sel = '[data-i18n], [data-i18n-attr], [data-i18n-label]';
    if (root.nodeType === 1 && root.matches(sel)) { render(root); }
    Array.prototype.forEach.call(root.querySelectorAll(sel), render);
  }

  function setVars(el, vars) {
    if (vars) { el.setAttribute('data-i18n-vars', JSON.stringify(vars)); } else { el.removeAttribute('data-i18n-vars'); }
  }

  function set(el, key, vars) {
    el.setAttribute('data-i18n', key);
    setVars(el, vars);
    if (lang) { el.textContent = t(key, vars); }
    return el;
  }

  function say(el, key, vars) {
    if (!key) {
      el.removeAttribute('data-i18n');
      el.removeAttribute('data-i18n-vars');
      el.textContent = '';
      return;
    }
    set(el, key, vars);
  }

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

  function setAttr(el, attr, key, vars) {
    var pairs = (el.getAttribute('data-i18n-attr') || '').split(';').filter(function (p) {
      return p && p.slice(0, p.indexOf(':')).trim() !== attr;
    });
    pairs.push(attr + ':' + key);
    el.setAttribute('data-i18n-attr', pairs.join(';'));
    if (vars !== undefined) { setVars(el, vars); }
    if (lang) { el.setAttribute(attr, t(key, varsOf(el))); }
    return el;
  }

  function setLabel(el, kind, id) {
    el.setAttribute('data-i18n-label', kind + ':' + id);
    el.textContent = label(kind, id);
    return el;
  }

  function known(code) {
    return langs.some(function (l) { return l.code === code; });
  }

  function firstLanguage(pinfo) {
    var saved = '';
    try { saved = localStorage.getItem(STORE) || ''; } catch (e) { saved = ''; }
    if (known(saved)) { return saved; }
    var prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < prefs.length; i++) {
      var p = String(prefs[i]).toLowerCase();
      var base = p.split('-')[0];
      if (base === 'no') { base = 'nb'; }
      if (known(base)) { return base; }
    }
    var policy = (pinfo && pinfo.languages) || [];
    for (var j = 0; j < policy.length; j++) { if (known(policy[j])) { return policy[j]; } }
    return 'en';
  }

  function fillSwitcher() {
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-switcher]'), function (box) {
      var sel = box.querySelector('select');
      if (!sel) {
        box.classList.add('lang-switch');
        var lab = set(document.createElement('label'), 'common.language');
        lab.setAttribute('for', 'lang');
        sel = document.createElement('select');
        sel.id = 'lang';
        sel.addEventListener('change', function () { use(sel.value); });
        box.appendChild(lab);
        box.appendChild(sel);
      }
      sel.replaceChildren();
      langs.forEach(function (l) {
        var o = document.createElement('option');
        o.value = l.code;
        o.lang = l.code;
        o.textContent = l.name || l.code;
        sel.appendChild(o);
      });
      sel.value = lang;
    });
  }

  function load(code) {
    var gen = ++loadGen;
    var need = [getJSON('/i18n/staff/' + encodeURIComponent(code) + '.json')];
    if (code !== 'en' && !Object.keys(en).length) { need.push(getJSON('/i18n/staff/en.json').catch(function () { return {}; })); }
    return Promise.all(need).then(function (got) {
      if (gen !== loadGen) { return; }
      cat = got[0] || {};
      if (code === 'en') { en = cat; } else if (got[1]) { en = got[1]; }
      lang = code;
      document.documentElement.lang = code;
      fillSwitcher();
      apply(document);
      document.documentElement.setAttribute('data-lang-loaded', code);
      listeners.forEach(function (fn) { try { fn(code); } catch (e) { /* one page's listener never stops another's */ } });
    });
  }

  function use(code) {
    try { localStorage.setItem(STORE, code); } catch (e) { /* storage may be blocked */ }
    return load(code);
  }

  var ready = Promise.all([manifest, info]).then(function (r) {
    var first = firstLanguage(r[1]);
    return load(first).catch(function () { return first === 'en' ? null : load('en'); });
  });

  window.I18N = {
    t: t,
    set: set,
    setAttr: setAttr,
    say: say,
    el: el,
    apply: apply,
    label: label,
    setLabel: setLabel,
    emergencyName: function (e) { return (e && e.names && e.names[lang]) || (e && e.name) || ''; },
    lang: function () { return lang; },
    onChange: function (fn) { listeners.push(fn); },
    use: use,
    ready: ready,
    info: info
  };
})();
