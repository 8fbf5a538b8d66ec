// helpmesh chat widget. A centre's website adds one line, no inline script:
//
//   <script src="https://CENTRE/widget.js" defer></script>
//
// It adds a fixed "Chat with us" button that opens the centre's /chat page in
// an iframe. The centre must list the site's origin in its AllowedOrigins
// (the chat page's CSP frame-ancestors and the chat socket's origin check).
// Optional attributes on the script tag:
//   data-label="..."   the button's text (default: by the host page's lang)
//   data-lang="nb"     the language of the button text
// The widget stores nothing. When the visitor uses quick exit inside the chat,
// the host page is replaced too (location.replace), so Back does not return.
(function () {
  'use strict';
  var me = document.currentScript;
  if (!me || !me.src || window.__helpmeshWidget) return;
  window.__helpmeshWidget = true;
  var origin = new URL(me.src, location.href).origin;

  var LABELS = {
    nb: ['Chat med oss', 'Lukk chatten'],
    nn: ['Chat med oss', 'Lukk chatten'],
    no: ['Chat med oss', 'Lukk chatten'],
    en: ['Chat with us', 'Close the chat'],
    fr: ['Discuter avec nous', 'Fermer la discussion'],
    de: ['Chatte mit uns', 'Chat schließen']
  };
  var lang = (me.getAttribute('data-lang') || document.documentElement.lang || navigator.language || 'nb')
    .toLowerCase().split('-')[0];
  if (lang === 'no') lang = 'nb';
  var words = LABELS[lang] || LABELS.nb;
  var openText = me.getAttribute('data-label') || words[0];

  function style(el, css) {
    for (var k in css) if (Object.prototype.hasOwnProperty.call(css, k)) el.style[k] = css[k];
    return el;
  }

  var button = style(document.createElement('button'), {
    position: 'fixed', right: '16px', bottom: '16px', zIndex: '2147483000',
    minHeight: '48px', padding: '12px 20px', border: '0', borderRadius: '24px',
    background: '#2f5d62', color: '#ffffff', font: '600 16px/1.2 system-ui, sans-serif',
    boxShadow: '0 2px 8px rgba(0,0,0,0.25)', cursor: 'pointer'
  });
  button.type = 'button';
  button.textContent = openText;
  button.setAttribute('aria-expanded', 'false');
  button.setAttribute('aria-controls', 'helpmesh-chat-panel');

  var panel = style(document.createElement('div'), {
    position: 'fixed', right: '16px', bottom: '76px', zIndex: '2147483000',
    width: 'min(400px, calc(100vw - 32px))', height: 'min(640px, calc(100vh - 100px))',
    background: '#f6f4ef', borderRadius: '12px', overflow: 'hidden',
    boxShadow: '0 4px 24px rgba(0,0,0,0.3)', display: 'none'
  });
  panel.id = 'helpmesh-chat-panel';
  var frame = null;

  function open() {
    if (!frame) {
      frame = style(document.createElement('iframe'), { width: '100%', height: '100%', border: '0', display: 'block' });
      frame.title = openText;
      frame.src = origin + '/chat' + (/^(nb|nn|en|fr|de)$/.test(lang) ? '?lang=' + lang : '');
      frame.setAttribute('referrerpolicy', 'no-referrer');
      panel.appendChild(frame);
    }
    panel.style.display = 'block';
    button.textContent = words[1];
    button.setAttribute('aria-expanded', 'true');
    frame.focus();
  }

  function close() {
    panel.style.display = 'none';
    button.textContent = openText;
    button.setAttribute('aria-expanded', 'false');
  }

  button.addEventListener('click', function () {
    if (panel.style.display === 'none') open(); else close();
  });

  // Quick exit inside the chat: the host page leaves as well.
  window.addEventListener('message', function (e) {
    if (e.origin !== origin || !e.data || e.data.type !== 'helpmesh:quick-exit') return;
    var url = String(e.data.url || 'about:blank');
    if (!/^(https?:\/\/|about:blank$)/.test(url)) url = 'about:blank';
    if (frame) frame.remove();
    location.replace(url);
  });

  function mount() {
    document.body.appendChild(panel);
    document.body.appendChild(button);
  }
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);
})();
