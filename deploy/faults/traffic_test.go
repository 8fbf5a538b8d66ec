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
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// traffic is live load on the federation: visitor bots that start chats at
// whichever centre takes them, talk, and leave (a few give up while
// waiting), and volunteer bots that answer every offer. Both sides count
// what happened to every contact, per entry centre, so the test can hold
// the centres' KPIs to the bots' own tally exactly.
type traffic struct {
	f        *fed
	ctx      context.Context // visitors start no new contact once it ends
	cancel   context.CancelFunc
	visitors sync.WaitGroup
	// volCtx ends once every visitor is done: only then may the
	// volunteers sign out, or a waiting visitor would wait forever.
	volCtx    context.Context
	volCancel context.CancelFunc
	wg        sync.WaitGroup // the volunteers

	visits atomic.Int64

	mu sync.Mutex
	// per entry centre, as the visitors saw it
	started, answered, abandoned, requeued, lost, refused map[string]int
	// per entry centre, as the volunteers saw it: conversations they
	// connected, by whether the contact came from their own centre
	volLocal, volOverflow map[string]int
	problems              []string
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

func newTraffic(f *fed) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	volCtx, volCancel := context.WithCancel(context.Background())
	m := func() map[string]int { return map[string]int{} }
	return &traffic{f: f, ctx: ctx, cancel: cancel, volCtx: volCtx, volCancel: volCancel,
		started: m(), answered: m(), abandoned: m(), requeued: m(), lost: m(), refused: m(),
		volLocal: m(), volOverflow: m()}
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
	tr.volCancel()
	tr.wg.Wait()
}

// ---- volunteers ----

// volunteerBot is signed in at its home centre and answers every offer;
// when its console closes (its centre restarted) it logs in again.
func (tr *traffic) volunteerBot(t *testing.T, home *centre, id string) {
	code := tr.f.register(home, id)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if err := postJSON(hc, home, "/v1/volunteer/enrol", map[string]string{"volunteer": id, "code": code, "password": "a long enough password"}); err != nil {
		t.Fatalf("enrol %s: %v", id, err)
	}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for tr.volCtx.Err() == nil {
			if err := tr.volunteerSession(home, id, hc); err != nil && tr.volCtx.Err() == nil {
				// The centre is restarting: try again shortly.
				select {
				case <-tr.volCtx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}()
}

func postJSON(hc *http.Client, c *centre, path string, body any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.http+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://"+c.http)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, msg)
	}
	return nil
}

// volunteerSession is one console session, until the socket closes or the
// traffic stops with no conversation open.
func (tr *traffic) volunteerSession(home *centre, id string, hc *http.Client) error {
	if err := postJSON(hc, home, "/v1/volunteer/login", map[string]string{"volunteer": id, "password": "a long enough password"}); err != nil {
		return err
	}
	// The console lives past tr.ctx: a bot finishes its conversations.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+home.http+"/v1/console", &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {"http://" + home.http}}})
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	send := func(m map[string]any) { _ = wsjson.Write(ctx, conn, m) }
	send(map[string]any{"type": "available", "channel": "chat", "on": true})
	frames := readFrames(ctx, conn)
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
			}
		}
	}
}

// readFrames reads JSON frames from conn until it fails or ctx ends.
func readFrames(ctx context.Context, conn *websocket.Conn) <-chan map[string]any {
	frames := make(chan map[string]any, 64)
	go func() {
		defer close(frames)
		for {
			var m map[string]any
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				return
			}
			select {
			case frames <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return frames
}

// ---- visitors ----

// visitorBots start n visitors, each starting chats one after another at
// a random centre until the traffic stops.
func (tr *traffic) visitorBots(n int, centres []*centre) {
	for i := range n {
		tr.visitors.Add(1)
		go func() {
			defer tr.visitors.Done()
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for tr.ctx.Err() == nil {
				c := centres[r.IntN(len(centres))]
				if !tr.visit(c, r, i) {
					// Refused (restarting or draining): a real page or
					// proxy tries again, here or elsewhere.
					select {
					case <-tr.ctx.Done():
					case <-time.After(300 * time.Millisecond):
					}
				}
			}
		}()
	}
}

// visit is one contact at c; false when c did not take it.
func (tr *traffic) visit(c *centre, r *rand.Rand, bot int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Each contact is another visitor, with an address of its own (compose
	// trusts the Docker gateway as a proxy, --trusted-proxies), so
	// the per-address limit on chat starts sees visitors, not one host.
	conn, resp, err := websocket.Dial(ctx, "ws://"+c.http+"/v1/chat?channel=chat&lang=nb", &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"http://" + c.http}, "X-Forwarded-For": {fmt.Sprintf("10.77.%d.%d", bot, tr.visits.Add(1)%250+1)}},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
			tr.problem("visitor %d at %s: refused with HTTP %d", bot, c.svc, resp.StatusCode)
		}
		tr.count(tr.refused, c.svc)
		return false
	}
	defer conn.CloseNow()
	frames := readFrames(ctx, conn)
	lost := func(what string) bool {
		tr.count(tr.lost, c.svc)
		tr.problem("visitor %d at %s: %s", bot, c.svc, what)
		return true
	}
	first, ok := <-frames
	if !ok || first["type"] == "error" {
		// Refused, or drain began during the upgrade: not a contact.
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
			_ = wsjson.Write(ctx, conn, map[string]any{"type": "end"})
		case m, ok := <-frames:
			if !ok {
				return lost("socket closed while waiting")
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
	// Two exchanges, then the visitor says goodbye.
	for i := range 2 {
		text := fmt.Sprintf("bot %d says %d", bot, i)
		if err := wsjson.Write(ctx, conn, map[string]any{"type": "message", "id": "m" + strconv.Itoa(i), "text": text}); err != nil {
			return lost(fmt.Sprintf("send: %v", err))
		}
		for replied := false; !replied; {
			m, ok := <-frames
			if !ok {
				return lost("socket closed mid-conversation")
			}
			switch {
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
	_ = wsjson.Write(ctx, conn, map[string]any{"type": "end"})
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
	cl := http.Client{Timeout: 5 * time.Second}
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
