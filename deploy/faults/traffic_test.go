//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"golang.org/x/time/rate"
)

// traffic is live load on the federation: visitor bots that start chats at
// whichever centre takes them, at a fixed pace, talk, and leave (a few give
// up while waiting), and volunteer bots that answer every offer. Both sides
// count what happened to every contact, per entry centre, so the test can
// hold the centres' KPIs to the bots' own tally exactly. Every bot keeps
// within a real visitor's or volunteer's limits (pace_test.go).
type traffic struct {
	f      *fed
	name   string
	bots   int
	perSec float64 // chat starts (dials) a second, all bots together
	// resume: the visitor bots' pages take resumed conversations
	// (resume=1, chatSession): an overflowed conversation goes on at the
	// volunteer's centre when the entry centre says move or is lost.
	resume bool
	// think is how long a visitor bot waits before its second message:
	// longer conversations, so that some are open when a centre stops.
	think    time.Duration
	pace     *rate.Limiter // every dial waits for it
	addrs    *addrPool
	ctx      context.Context // visitors start no new contact once it ends
	cancel   context.CancelFunc
	visitors sync.WaitGroup
	// volCtx ends once every visitor is done: only then may the
	// volunteers sign out, or a waiting visitor would wait forever.
	volCtx    context.Context
	volCancel context.CancelFunc
	wg        sync.WaitGroup // the volunteers

	began time.Time     // the first visitor bot started
	ran   time.Duration // from began to stop

	mu sync.Mutex
	// per entry centre, as the visitors saw it
	started, answered, abandoned, requeued, lost, refused map[string]int
	// errorPages counts visitors every centre refused: what a page shows
	// as "nobody can take your chat" (entry failover found no centre).
	errorPages map[string]int
	// resumed: conversations of visitors of that entry centre resumed at
	// the volunteer's centre (resume traffic only)
	resumed map[string]int
	// talking: conversations of visitors of that entry centre open now
	talking map[string]int
	// per entry centre, as the volunteers saw it: conversations they
	// connected, by whether the contact came from their own centre
	volLocal, volOverflow map[string]int
	problems              []string
	// limits are refusals for going over a limit (429, slow_down,
	// flooding, queue_full, a 1008 close): each fails the test.
	limits []string
	// volErrors are other error frames the volunteer bots got (an accept
	// that came after the visitor gave up): counted, not failures.
	volErrors int
	// answeredAt is when each chat ended after a conversation, in order.
	answeredAt []time.Time
}

// answered counts a chat that had its conversation, at c.
func (tr *traffic) countAnswered(c *centre) {
	tr.mu.Lock()
	tr.answered[c.svc]++
	tr.answeredAt = append(tr.answeredAt, time.Now())
	tr.mu.Unlock()
}

// answeredBetween is how many chats ended after a conversation in [from,
// to], and the longest stretch of that window without one.
func (tr *traffic) answeredBetween(from, to time.Time) (n int, longestGap time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	last := from
	for _, at := range tr.answeredAt {
		if at.Before(from) || at.After(to) {
			continue
		}
		n++
		longestGap = max(longestGap, at.Sub(last))
		last = at
	}
	return n, max(longestGap, to.Sub(last))
}

// newTraffic prepares the traffic of scenario name: bots visitor bots that
// start perSecond chats a second between them (a bound: a slow machine may
// make fewer), each from an address of a pool sized for that pace.
func newTraffic(f *fed, name string, bots int, perSecond float64) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	volCtx, volCancel := context.WithCancel(context.Background())
	m := func() map[string]int { return map[string]int{} }
	f.mu.Lock()
	f.traffics++
	prefix := fmt.Sprintf("10.%d", 76+f.traffics)
	f.mu.Unlock()
	return &traffic{f: f, name: name, bots: bots, perSec: perSecond, pace: newPace(perSecond), addrs: newAddrPool(prefix, bots, perSecond),
		ctx: ctx, cancel: cancel, volCtx: volCtx, volCancel: volCancel,
		started: m(), answered: m(), abandoned: m(), requeued: m(), lost: m(), refused: m(), errorPages: m(), resumed: m(), talking: m(),
		volLocal: m(), volOverflow: m()}
}

// limit records a refusal for going over a limit: a failure of the test.
func (tr *traffic) limit(format string, args ...any) {
	tr.mu.Lock()
	tr.limits = append(tr.limits, time.Now().UTC().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	tr.mu.Unlock()
}

// report fails t for every refusal over a limit and every contact that went
// wrong, and gives the traffic's figure: how many contacts, at what pace.
// Call it after stop.
func (tr *traffic) report(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.limits) > 0 {
		t.Errorf("%s: %d refusals of the bots for going over a limit (%s):\n  %s", tr.name, len(tr.limits), limitBlame, strings.Join(tr.limits, "\n  "))
	}
	if len(tr.problems) > 0 {
		t.Errorf("%s: %d contacts went wrong:\n  %s", tr.name, len(tr.problems), strings.Join(tr.problems, "\n  "))
	}
	started, refused := 0, 0
	for _, n := range tr.started {
		started += n
	}
	for _, n := range tr.refused {
		refused += n
	}
	tr.f.countContacts(tr.name, started)
	tr.addrs.mu.Lock()
	dials, waited, size := tr.addrs.starts, tr.addrs.waited, tr.addrs.size
	tr.addrs.mu.Unlock()
	tr.f.figure(t, "%s traffic: %d contacts started by %d visitor bots in %v (%d dials, %d refused while a centre was down or draining, each tried at the next centre; %d error pages; pace %.0f starts/s in total, %.1f/s made) from %d addresses (none reused within %v: %d waits); %d limit refusals; %d other console errors",
		tr.name, started, tr.bots, tr.ran.Round(time.Second), dials, refused, tr.errorPages["all"], tr.perSec, float64(dials)/max(tr.ran.Seconds(), 1), size, addrReuseAfter, waited, len(tr.limits), tr.volErrors)
}

func (tr *traffic) count(m map[string]int, centre string) {
	tr.mu.Lock()
	m[centre]++
	tr.mu.Unlock()
}

func (tr *traffic) problem(format string, args ...any) {
	tr.mu.Lock()
	tr.problems = append(tr.problems, time.Now().UTC().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	tr.mu.Unlock()
}

// stop asks the bots to finish: visitors end after their current contact,
// then the volunteers, who answer until the last visitor is done, sign out.
func (tr *traffic) stop() {
	tr.cancel()
	tr.visitors.Wait()
	if !tr.began.IsZero() && tr.ran == 0 {
		tr.ran = time.Since(tr.began)
	}
	tr.volCancel()
	tr.wg.Wait()
}

// ---- volunteers ----

// volunteerBot is signed in at its home centre and answers every offer;
// when its console closes (its centre restarted) it logs in again, once its
// centre is ready.
func (tr *traffic) volunteerBot(t *testing.T, home *centre, id string) {
	code := tr.f.register(t, home, id)
	v := tr.f.volunteerClient(home, id)
	if err := v.enrol(tr.volCtx, code); err != nil {
		t.Fatal(err)
	}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for tr.volCtx.Err() == nil {
			err := tr.volunteerSession(v)
			if errors.Is(err, errLimit) {
				tr.limit("volunteer %s: %v", id, err)
			}
			if err == nil || tr.volCtx.Err() != nil {
				continue
			}
			// The centre is restarting: log in again once it is ready
			// (a login refused while it drains would spend an attempt).
			for tr.volCtx.Err() == nil && !ready(home) {
				select {
				case <-tr.volCtx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
		}
	}()
}

// newVolunteerHTTP is a volunteer's browser: a cookie jar, and patience.
func newVolunteerHTTP() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: callTimeout}
}

// postJSONWithin posts body to c as a page of c would, within hc's timeout.
func postJSONWithin(hc *http.Client, c *centre, path string, body any) (int, []byte, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.http+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://"+c.http)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	msg, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, msg, err
}

// volunteerSession is one console session, until the socket closes or the
// traffic stops with no conversation open.
func (tr *traffic) volunteerSession(v *volunteerClient) error {
	home, id := v.c, v.id
	if err := v.login(tr.volCtx); err != nil {
		return err
	}
	// The console lives past tr.ctx: a bot finishes its conversations.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, callTimeout)
	conn, resp, err := websocket.Dial(dctx, "ws://"+home.http+"/v1/console", &websocket.DialOptions{HTTPClient: v.hc, HTTPHeader: http.Header{"Origin": {"http://" + home.http}}})
	dcancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			tr.limit("volunteer %s: console refused with 429: %v", id, err)
		}
		return err
	}
	defer conn.CloseNow()
	send := func(m map[string]any) { _ = wsjson.Write(ctx, conn, m) }
	send(map[string]any{"type": "available", "channel": "chat", "on": true})
	frames, closed := readFrames(ctx, conn)
	open := map[string]bool{}
	stopping := tr.volCtx.Done()
	for {
		select {
		case <-stopping:
			stopping = nil
			send(map[string]any{"type": "available", "channel": "chat", "on": false})
			if len(open) == 0 {
				return nil
			}
		case m, ok := <-frames:
			if !ok {
				if websocket.CloseStatus(closed()) == websocket.StatusPolicyViolation {
					tr.limit("volunteer %s: console closed for a policy violation (1008): %v", id, closed())
				}
				if len(open) > 0 {
					tr.problem("%s: console closed with %d conversations open", id, len(open))
				}
				return errors.New("console closed")
			}
			contact, _ := m["contact"].(string)
			switch m["type"] {
			case "offer":
				send(map[string]any{"type": "accept", "contact": contact})
			case "connected":
				open[contact] = true
				from, _ := m["from_centre"].(string)
				if from == "" {
					tr.count(tr.volLocal, home.svc)
				} else {
					tr.count(tr.volOverflow, from)
				}
			case "message":
				text, _ := m["text"].(string)
				send(map[string]any{"type": "message", "contact": contact, "id": "r" + strconv.Itoa(rand.IntN(1e9)), "text": "re: " + text})
			case "ended":
				delete(open, contact)
				send(map[string]any{"type": "end", "contact": contact, "topics": []string{"family"}, "age_group": "16-18"})
				if stopping == nil && len(open) == 0 {
					return nil
				}
			case "lost":
				delete(open, contact)
				tr.problem("%s: conversation lost (its visitor's centre went away)", id)
			case "error":
				if code, _ := m["code"].(string); limitCodes[code] {
					tr.limit("volunteer %s at %s: error frame %v", id, home.svc, m)
				} else {
					tr.mu.Lock()
					tr.volErrors++
					tr.mu.Unlock()
				}
			}
		}
	}
}

// readFrames reads JSON frames from conn until it fails or ctx ends. Once
// the channel is closed, closed says why (websocket.CloseStatus reads the
// close code from it); before, it is nil.
func readFrames(ctx context.Context, conn *websocket.Conn) (<-chan map[string]any, func() error) {
	frames := make(chan map[string]any, 64)
	var (
		mu  sync.Mutex
		why error
	)
	stopped := func(err error) {
		mu.Lock()
		why = err
		mu.Unlock()
	}
	go func() {
		defer close(frames)
		for {
			var m map[string]any
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				stopped(err)
				return
			}
			select {
			case frames <- m:
			case <-ctx.Done():
				stopped(ctx.Err())
				return
			}
		}
	}()
	return frames, func() error {
		mu.Lock()
		defer mu.Unlock()
		return why
	}
}

// ---- visitors ----

// visitorBots start the traffic's visitor bots, each starting chats one
// after another at a random centre until the traffic stops, every start
// (every dial, also one refused) paced by tr.pace and from an address of
// tr.addrs.
func (tr *traffic) visitorBots(centres []*centre) {
	tr.began = time.Now()
	for i := range tr.bots {
		tr.visitors.Add(1)
		go func() {
			defer tr.visitors.Done()
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for {
				if tr.pace.Wait(tr.ctx) != nil {
					return
				}
				// As the chat page does (entry failover): the centre the
				// visitor came to first, then, if it refuses or is down,
				// every other centre before the visitor sees an error.
				took := false
				for _, k := range r.Perm(len(centres)) {
					addr := tr.addrs.take()
					took = tr.visit(centres[k], r, i, addr.addr)
					tr.addrs.give(addr)
					if took || tr.ctx.Err() != nil {
						break
					}
				}
				if !took && tr.ctx.Err() == nil {
					tr.count(tr.errorPages, "all")
					select {
					case <-tr.ctx.Done():
					case <-time.After(300 * time.Millisecond):
					}
				}
			}
		}()
	}
}

// limitFrame records an error frame that says the visitor went over a
// limit, and reports whether m was one.
func (tr *traffic) limitFrame(bot int, c *centre, addr string, m map[string]any) bool {
	if m["type"] != "error" {
		return false
	}
	if code, _ := m["code"].(string); limitCodes[code] {
		tr.limit("visitor %d (%s) at %s: error frame %v", bot, addr, c.svc, m)
		return true
	}
	return false
}

// visit is one contact at c from addr; false when c did not take it.
func (tr *traffic) visit(c *centre, r *rand.Rand, bot int, addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Each contact is another visitor, with an address of its own (compose
	// trusts the Docker networks as proxies, --trusted-proxies, as a
	// centre trusts its reverse proxy),
	// so the per-address limits see visitors, not one host.
	dctx, dcancel := context.WithTimeout(ctx, callTimeout)
	query := "channel=chat&lang=nb"
	if tr.resume {
		query += "&resume=1"
	}
	conn, resp, err := websocket.Dial(dctx, "ws://"+c.http+"/v1/chat?"+query, &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"http://" + c.http}, "X-Forwarded-For": {addr}},
	})
	dcancel()
	if err != nil {
		switch {
		case resp == nil, resp.StatusCode == http.StatusServiceUnavailable:
			// Down, restarting or draining: try again.
		case resp.StatusCode == http.StatusTooManyRequests:
			body, _ := io.ReadAll(resp.Body)
			tr.limit("visitor %d (%s) at %s: chat refused with 429 %s (Retry-After %q)", bot, addr, c.svc, clip(body), resp.Header.Get("Retry-After"))
		default:
			tr.problem("visitor %d at %s: refused with HTTP %d", bot, c.svc, resp.StatusCode)
		}
		tr.count(tr.refused, c.svc)
		return false
	}
	defer conn.CloseNow()
	var (
		frames <-chan map[string]any
		closed func() error
		write  = func(m map[string]any) error { return wsjson.Write(ctx, conn, m) }
	)
	if tr.resume {
		s := newChatSession(ctx, fmt.Sprintf("visitor %d", bot), conn, "http://"+c.http, addr)
		frames, closed, write = s.frames, s.closed, func(m map[string]any) error { return s.send(ctx, m) }
		defer func() {
			s.closeNow()
			if n := s.resumeCount(); n > 0 {
				tr.mu.Lock()
				tr.resumed[c.svc] += n
				tr.mu.Unlock()
			}
			if d := s.duplicates(); len(d) > 0 {
				tr.problem("visitor %d at %s: the volunteer's messages %v came more than once (after %d resumes)", bot, c.svc, d, s.resumeCount())
			}
		}()
	} else {
		frames, closed = readFrames(ctx, conn)
	}
	lost := func(what string) bool {
		tr.count(tr.lost, c.svc)
		if websocket.CloseStatus(closed()) == websocket.StatusPolicyViolation {
			tr.limit("visitor %d (%s) at %s: closed for a policy violation (1008): %v", bot, addr, c.svc, closed())
		}
		tr.problem("visitor %d at %s: %s", bot, c.svc, what)
		return true
	}
	first, ok := <-frames
	if ok && tr.limitFrame(bot, c, addr, first) {
		tr.count(tr.refused, c.svc)
		return false
	}
	if !ok || first["type"] == "error" {
		// Drain began during the upgrade, or the centre closed: not a
		// contact.
		if code, _ := first["code"].(string); ok && code != "draining" && code != "closed" {
			tr.problem("visitor %d at %s: refused after the upgrade: %v", bot, c.svc, first)
		}
		tr.count(tr.refused, c.svc)
		return false
	}
	tr.count(tr.started, c.svc)
	// One in eight gives up while waiting, after up to a second. Leaving
	// is a frame, not a dropped socket, so that a "connected" already on
	// its way is seen and the contact counted as the centre counts it.
	var giveUp <-chan time.Time
	if r.IntN(8) == 0 {
		giveUp = time.After(time.Duration(r.IntN(1000)) * time.Millisecond)
	}
	connected, left := first["type"] == "connected", false
	for !connected {
		select {
		case <-giveUp:
			giveUp = nil
			left = true
			_ = write(map[string]any{"type": "end"})
		case m, ok := <-frames:
			if !ok {
				return lost("socket closed while waiting")
			}
			if tr.limitFrame(bot, c, addr, m) {
				return lost(fmt.Sprintf("refused while waiting: %v", m))
			}
			switch m["type"] {
			case "requeued":
				tr.count(tr.requeued, c.svc)
			case "connected":
				connected = true
			case "ended":
				if left {
					tr.count(tr.abandoned, c.svc)
					return true
				}
				return lost(fmt.Sprintf("ended while waiting: %v", m))
			}
		}
	}
	if left {
		// Connected just before the visitor's end arrived: a conversation
		// the visitor ended at once.
		for m := range frames {
			if m["type"] == "ended" {
				tr.countAnswered(c)
				return true
			}
		}
		return lost("no ended after end")
	}
	tr.count(tr.talking, c.svc)
	defer func() {
		tr.mu.Lock()
		tr.talking[c.svc]--
		tr.mu.Unlock()
	}()
	// Two exchanges, then the visitor says goodbye.
	for i := range 2 {
		if i > 0 && tr.think > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(tr.think):
			}
		}
		text := fmt.Sprintf("bot %d says %d", bot, i)
		if err := write(map[string]any{"type": "message", "id": "m" + strconv.Itoa(i), "text": text}); err != nil {
			return lost(fmt.Sprintf("send: %v", err))
		}
		for replied := false; !replied; {
			m, ok := <-frames
			if !ok {
				return lost("socket closed mid-conversation")
			}
			if tr.limitFrame(bot, c, addr, m) {
				return lost(fmt.Sprintf("message refused: %v", m))
			}
			switch {
			case m["type"] == "error":
				return lost(fmt.Sprintf("message refused: %v", m))
			case m["type"] == "requeued":
				tr.count(tr.requeued, c.svc)
				return lost("requeued mid-conversation")
			case m["type"] == "ended":
				return lost(fmt.Sprintf("conversation ended by the other side: %v", m))
			case m["type"] == "message" && m["text"] == "re: "+text:
				replied = true
			}
		}
	}
	_ = write(map[string]any{"type": "end"})
	for m := range frames {
		if m["type"] == "ended" {
			tr.countAnswered(c)
			return true
		}
	}
	return lost("no ended after end")
}

// ---- the centres' side of the books ----

// kpis are one centre's contact counters, summed over channel and language.
type kpis struct {
	offered, local, overflow, abandoned, waiting, inProgress int
}

func (k kpis) minus(o kpis) kpis {
	return kpis{k.offered - o.offered, k.local - o.local, k.overflow - o.overflow, k.abandoned - o.abandoned, k.waiting, k.inProgress}
}

func (k kpis) plus(o kpis) kpis {
	return kpis{k.offered + o.offered, k.local + o.local, k.overflow + o.overflow, k.abandoned + o.abandoned, k.waiting + o.waiting, k.inProgress + o.inProgress}
}

// conserved is the KPIs' conservation law (docs/operations.md).
func (k kpis) conserved() bool {
	return k.offered == k.local+k.overflow+k.abandoned+k.waiting+k.inProgress
}

func (k kpis) String() string {
	return fmt.Sprintf("offered %d = answered local %d + overflow %d + abandoned %d + waiting %d + in progress %d",
		k.offered, k.local, k.overflow, k.abandoned, k.waiting, k.inProgress)
}

// scrape reads c's KPIs from /metrics, as Prometheus would.
func (f *fed) scrape(c *centre) (kpis, error) {
	cl := http.Client{Timeout: 15 * time.Second}
	resp, err := cl.Get("http://" + c.http + "/metrics")
	if err != nil {
		return kpis{}, err
	}
	defer resp.Body.Close()
	var k kpis
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		n := int(v)
		switch name {
		case "helpmesh_contacts_offered_total":
			k.offered += n
		case "helpmesh_contacts_answered_total":
			if strings.Contains(rest, `answered_by="overflow"`) {
				k.overflow += n
			} else {
				k.local += n
			}
		case "helpmesh_contacts_abandoned_total":
			k.abandoned += n
		case "helpmesh_contacts_waiting":
			k.waiting += n
		case "helpmesh_contacts_in_progress":
			k.inProgress += n
		}
	}
	return k, sc.Err()
}

var stopLine = regexp.MustCompile(`msg="centre stopped: contacts this run".*? offered=(\d+) answered_local=(\d+) answered_overflow=(\d+) abandoned=(\d+) waiting=(\d+) in_progress=(\d+)`)

// lastStopTallies is what the last stopped run of c's container logged it
// had handled: a stopped process's counters are gone from /metrics.
func (f *fed) lastStopTallies(c *centre) (kpis, int, error) {
	out, err := exec.Command("docker", "logs", f.container(c)).CombinedOutput()
	if err != nil {
		return kpis{}, 0, fmt.Errorf("docker logs %s: %v", c.svc, err)
	}
	all := stopLine.FindAllStringSubmatch(string(out), -1)
	if len(all) == 0 {
		return kpis{}, 0, fmt.Errorf("no stop tallies in %s's log", c.svc)
	}
	m := all[len(all)-1]
	n := make([]int, 6)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	return kpis{n[0], n[1], n[2], n[3], n[4], n[5]}, len(all), nil
}
