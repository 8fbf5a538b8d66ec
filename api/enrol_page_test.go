package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// The enrolment page and the console check the server's password rules
// (static/password.js, which both load) before they post: its constants
// must be the server's.
func TestEnrolPageKnowsTheServersPasswordRules(t *testing.T) {
	js, err := web.ReadFile("web/static/password.js")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"MIN_CHARS": minPasswordRunes, "MAX_BYTES": maxPasswordBytes} {
		m := regexp.MustCompile(`var ` + name + ` = (\d+);`).FindSubmatch(js)
		if m == nil {
			t.Fatalf("password.js has no %s", name)
		}
		if got, _ := strconv.Atoi(string(m[1])); got != want {
			t.Errorf("password.js %s = %d, the server's is %d", name, got, want)
		}
	}
}

// loginStatus is the HTTP status of a login with password at pc.
func loginStatus(t *testing.T, pc *pageCentre, id, password string) int {
	t.Helper()
	b, _ := json.Marshal(LoginRequest{Volunteer: id, Password: password})
	resp, err := http.Post(pc.url+"/v1/volunteer/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEnrolLinkFromOverviewToConsole: staff issue a new code for an
// enrolled volunteer in the overview and copy the link; the volunteer opens
// it, is refused a weak password, sets a good one and lands in the console.
// The old password stops working, the code never leaves the browser except
// in the enrolment's body, and a used link says so, then throttles.
func TestEnrolLinkFromOverviewToConsole(t *testing.T) {
	fed := startPageFederation(t, 1)
	c := fed[0]
	const oldPassword, weak, good = "the old password", "short1", "correct horse battery staple"
	staffEnrol(t, c, consensus.Volunteer{ID: "v-e1", Centre: "c1", Alias: "Ragnhild", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: "volunteer"}, oldPassword)

	// Staff: a new code and its link, from the overview.
	browser := newBrowser(t)
	browsertest.Run(t, browser, "open the overview", chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(c.url+"/overview"),
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", c.token, chromedp.ByQuery),
		chromedp.Click("#token-submit", chromedp.ByQuery))
	row := `#volunteers tr[data-volunteer="v-e1"]`
	browsertest.Wait(t, browser, "the volunteer listed", `!!document.querySelector('`+row+` .new-code')`, 20*time.Second)
	browsertest.Eval(t, browser, `window.confirm = () => true`, nil)
	browsertest.Run(t, browser, "ask for a new code", chromedp.Click(row+` .new-code`, chromedp.ByQuery))
	browsertest.Wait(t, browser, "the link", `/\/enrol#v=v-e1&c=/.test((document.querySelector('#enrolment-link') || {}).value || '')`, 15*time.Second)
	var link, code string
	browsertest.Eval(t, browser, `document.querySelector('#enrolment-link').value`, &link)
	browsertest.Eval(t, browser, `document.querySelector('#enrolment-code').textContent`, &code)
	if want := c.url + "/enrol#v=v-e1&c=" + code; link != want || !codePattern.MatchString(code) {
		t.Fatalf("link %q, code %q; want %q", link, code, want)
	}
	browsertest.Run(t, browser, "copy the link", chromedp.Click("#copy-link", chromedp.ByQuery))
	browsertest.Wait(t, browser, "the copy's outcome", `document.querySelector('#copy-status').textContent !== ''`, 5*time.Second)
	var copied string
	browsertest.Eval(t, browser, `document.querySelector('#copy-status').textContent`, &copied)
	t.Logf("copy: %s", copied)
	screenshot(t, browser, "overview-enrolment-link")
	if got := loginStatus(t, c, "v-e1", oldPassword); got != http.StatusNoContent {
		t.Fatalf("the old password before the new one is set: HTTP %d, want 204", got)
	}

	// The volunteer, in a browser of their own.
	ctx := newBrowser(t)
	var mu sync.Mutex
	var requests []string
	var enrolBodies []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			defer mu.Unlock()
			requests = append(requests, e.Request.URL+" "+headerText(e.Request.Headers))
			if strings.HasSuffix(e.Request.URL, "/v1/volunteer/enrol") {
				var body strings.Builder
				for _, p := range e.Request.PostDataEntries {
					b, err := base64.StdEncoding.DecodeString(p.Bytes)
					if err != nil {
						b = []byte(p.Bytes)
					}
					body.Write(b)
				}
				enrolBodies = append(enrolBodies, body.String())
			}
		}
	})
	browsertest.Run(t, ctx, "open the link", network.Enable(),
		chromedp.Navigate(link),
		chromedp.WaitVisible("#password", chromedp.ByQuery))
	var shown, hash string
	browsertest.Eval(t, ctx, `document.querySelector('#volunteer-shown').textContent`, &shown)
	browsertest.Eval(t, ctx, `location.hash`, &hash)
	if shown != "v-e1" || hash != "" {
		t.Errorf("page shows volunteer %q, address keeps %q", shown, hash)
	}
	var bad []string
	browsertest.Eval(t, ctx, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name: %v", bad)
	}

	browsertest.Run(t, ctx, "a weak password",
		chromedp.SendKeys("#password", weak, chromedp.ByQuery),
		chromedp.SendKeys("#repeat", weak, chromedp.ByQuery),
		chromedp.Click("#enrol-submit", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the meter says weak", `document.querySelector('#strength-bar').dataset.level === 'weak' &&
		/^Weak/.test(document.querySelector('#strength-text').textContent)`, 5*time.Second)
	browsertest.Wait(t, ctx, "the refusal", `/at least 10 characters/.test(document.querySelector('#enrol-error').textContent)`, 5*time.Second)
	screenshot(t, ctx, "enrol-weak")
	mu.Lock()
	if len(enrolBodies) != 0 {
		t.Errorf("a weak password was posted: %v", enrolBodies)
	}
	mu.Unlock()

	browsertest.Eval(t, ctx, `document.querySelector('#password').value = document.querySelector('#repeat').value = ''`, nil)
	browsertest.Run(t, ctx, "a good password",
		chromedp.SendKeys("#password", good, chromedp.ByQuery), chromedp.SendKeys("#repeat", good, chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the meter says strong", `document.querySelector('#strength-bar').dataset.level === 'strong'`, 5*time.Second)
	browsertest.Run(t, ctx, "set it", chromedp.Click("#enrol-submit", chromedp.ByQuery))
	// The page navigates: poll only once the console is there.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	browsertest.Run(t, wctx, "the console page", chromedp.WaitVisible("#availability", chromedp.ByQuery))
	cancel()
	browsertest.Wait(t, ctx, "the console's desk", `location.pathname === '/console' && !!document.querySelector('#desk') &&
		!document.querySelector('#desk').hidden && document.querySelector('#login').hidden`, 30*time.Second)
	screenshot(t, ctx, "enrol-console")

	if got := loginStatus(t, c, "v-e1", oldPassword); got != http.StatusUnauthorized {
		t.Errorf("the old password after the reset: HTTP %d, want 401", got)
	}
	if got := loginStatus(t, c, "v-e1", good); got != http.StatusNoContent {
		t.Errorf("the new password: HTTP %d, want 204", got)
	}
	mu.Lock()
	if len(enrolBodies) != 1 || !strings.Contains(enrolBodies[0], code) {
		t.Errorf("enrolment bodies %v, want one with the code", enrolBodies)
	}
	for _, r := range requests {
		if !strings.HasPrefix(r, c.url+"/") {
			t.Errorf("request to another origin: %s", r)
		}
		if strings.Contains(r, code) || strings.Contains(r, normaliseCode(code)) {
			t.Errorf("the code left the browser in a request's address or headers: %s", r)
		}
	}
	mu.Unlock()

	// The link is spent: opened again, it says so, and guessing is throttled.
	browsertest.Run(t, ctx, "open the used link", chromedp.Navigate(link), chromedp.WaitVisible("#password", chromedp.ByQuery),
		chromedp.SendKeys("#password", good, chromedp.ByQuery), chromedp.SendKeys("#repeat", good, chromedp.ByQuery),
		chromedp.Click("#enrol-submit", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "used", `/already used or expired/.test(document.querySelector('#enrol-error').textContent)`, 15*time.Second)
	screenshot(t, ctx, "enrol-used")
	for i := 0; i < attemptFreeFailures; i++ {
		browsertest.Eval(t, ctx, `document.querySelector('#enrol-error').textContent = ''`, nil)
		browsertest.Wait(t, ctx, "the button back", `!document.querySelector('#enrol-submit').disabled`, 15*time.Second)
		browsertest.Run(t, ctx, "try again", chromedp.Click("#enrol-submit", chromedp.ByQuery))
		browsertest.Wait(t, ctx, "an answer", `document.querySelector('#enrol-error').textContent !== ''`, 15*time.Second)
	}
	browsertest.Wait(t, ctx, "throttled", `/^Too many attempts\. Try again in \d+ seconds\.$/.test(document.querySelector('#enrol-error').textContent)`, 5*time.Second)
}

func headerText(h network.Headers) string {
	var sb strings.Builder
	for k, v := range h {
		sb.WriteString(k)
		sb.WriteString(": ")
		if s, ok := v.(string); ok {
			sb.WriteString(s)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
