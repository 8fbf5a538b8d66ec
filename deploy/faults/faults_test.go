//go:build faults

// Package faults injects faults into the three-centre compose federation
// (deploy/compose.yml) with the docker CLI and watches it only through the
// documented HTTP API and WebSockets. Run from the repository root:
//
//	go test -tags faults -count=1 -v ./deploy/faults/
//
// It needs Docker and docker-compose (or docker compose), ports
// 127.0.0.1:8081-8083 free, and skips without Docker unless CI=true.
package faults

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

const project = "helpmesh-faults"

// centre is one compose service as the test reaches it.
type centre struct {
	svc   string // compose service, also the centre id
	http  string // published address on the host
	token string
}

type fed struct {
	t       *testing.T
	root    string
	compose []string
	c       map[string]*centre
}

func (f *fed) all() []*centre { return []*centre{f.c["centre-a"], f.c["centre-b"], f.c["centre-c"]} }

func sh(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func up(t *testing.T) *fed {
	t.Helper()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but docker is not usable: %v\n%s", err, out)
		}
		t.Skipf("docker is not usable, skipping the fault suite: %v", err)
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	f := &fed{t: t, root: root, c: map[string]*centre{
		"centre-a": {svc: "centre-a", http: "127.0.0.1:8081"},
		"centre-b": {svc: "centre-b", http: "127.0.0.1:8082"},
		"centre-c": {svc: "centre-c", http: "127.0.0.1:8083"},
	}}
	if exec.Command("docker", "compose", "version").Run() == nil {
		f.compose = []string{"docker", "compose"}
	} else {
		f.compose = []string{"docker-compose"}
	}
	sh(t, root, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "deploy/build/helpmesh", "./cmd/helpmesh")
	for _, d := range []string{"deploy/build/rootfs/data", "deploy/build/rootfs/shared"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, root, "docker", "build", "-q", "-t", "helpmesh:dev", "-f", "deploy/Dockerfile", "deploy")
	f.dc("down", "-v", "--remove-orphans")
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range f.all() {
				out, _ := exec.Command("docker", "logs", "--tail", "40", f.container(c)).CombinedOutput()
				t.Logf("last log lines of %s:\n%s", c.svc, out)
			}
		}
		f.dc("down", "-v", "--remove-orphans")
	})
	start := time.Now()
	f.dc("up", "-d")
	for _, c := range f.all() {
		f.waitReady(c, 3*time.Minute)
		c.token = f.readToken(c)
	}
	f.waitFor(60*time.Second, "every centre alive at every centre", func() bool {
		for _, c := range f.all() {
			v, err := f.federation(c)
			if err != nil || len(v.Centres) != 3 || v.Leader == "" {
				return false
			}
			for _, x := range v.Centres {
				if x.Gossip != "alive" {
					return false
				}
			}
		}
		return true
	})
	t.Logf("FIGURE federation up (compose up to all alive): %v", time.Since(start).Round(100*time.Millisecond))
	return f
}

func (f *fed) dc(args ...string) string {
	f.t.Helper()
	all := append(append([]string{}, f.compose[1:]...), append([]string{"-p", project, "-f", "deploy/compose.yml"}, args...)...)
	return sh(f.t, f.root, f.compose[0], all...)
}

func (f *fed) container(c *centre) string {
	return strings.TrimSpace(f.dc("ps", "-q", c.svc))
}

func (f *fed) docker(args ...string) {
	f.t.Helper()
	sh(f.t, f.root, "docker", args...)
}

// readToken copies the centre's admin token out of its volume.
func (f *fed) readToken(c *centre) string {
	f.t.Helper()
	out, err := exec.Command("docker", "cp", f.container(c)+":/data/admin.token", "-").Output()
	if err != nil {
		f.t.Fatalf("docker cp token of %s: %v", c.svc, err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	if _, err := tr.Next(); err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(tr)
	return strings.TrimSpace(string(b))
}

func (f *fed) waitFor(d time.Duration, what string, ok func() bool) time.Duration {
	f.t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if ok() {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

func ready(c *centre) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + c.http + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (f *fed) waitReady(c *centre, d time.Duration) time.Duration {
	return f.waitFor(d, c.svc+" ready", func() bool { return ready(c) })
}

type view struct {
	Leader  string `json:"leader"`
	Centres []struct {
		ID       string `json:"id"`
		Gossip   string `json:"gossip"`
		RaftRole string `json:"raft_role"`
	} `json:"centres"`
}

func (v view) gossip(id string) string {
	for _, c := range v.Centres {
		if c.ID == id {
			return c.Gossip
		}
	}
	return "absent"
}

func (f *fed) api(c *centre, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+c.http+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (f *fed) federation(c *centre) (view, error) {
	var v view
	code, b, err := f.api(c, http.MethodGet, "/v1/federation", "")
	if err != nil {
		return v, err
	}
	if code != http.StatusOK {
		return v, fmt.Errorf("HTTP %d", code)
	}
	return v, json.Unmarshal(b, &v)
}

// enrol writes a volunteer at c through the admin API (a roster write) and
// signs them in at the console.
func (f *fed) enrol(ctx context.Context, c *centre, id string) *ws {
	f.t.Helper()
	body := fmt.Sprintf(`{"id":%q,"centre":%q,"alias":%q,"channels":["chat"],"languages":["nb","en"],"capacity":2,"role":"volunteer"}`, id, c.svc, id)
	code, b, err := f.api(c, http.MethodPost, "/v1/volunteers", body)
	if err != nil || code != http.StatusOK {
		f.t.Fatalf("enrol %s: %d %s %v", id, code, b, err)
	}
	var w struct {
		Code string `json:"enrolment_code"`
	}
	if json.Unmarshal(b, &w) != nil || w.Code == "" {
		f.t.Fatalf("no enrolment code in %s", b)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	post := func(path string, body any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.http+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://"+c.http)
		resp, err := hc.Do(req)
		if err != nil {
			f.t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			f.t.Fatalf("%s: %d %s", path, resp.StatusCode, msg)
		}
	}
	post("/v1/volunteer/enrol", map[string]string{"volunteer": id, "code": w.Code, "password": "a long enough password"})
	post("/v1/volunteer/login", map[string]string{"volunteer": id, "password": "a long enough password"})
	conn, _, err := websocket.Dial(ctx, "ws://"+c.http+"/v1/console", &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {"http://" + c.http}}})
	if err != nil {
		f.t.Fatalf("console dial: %v", err)
	}
	v := newWS(ctx, f.t, conn, id)
	v.send(map[string]any{"type": "available", "channel": "chat", "on": true})
	return v
}

func visitor(ctx context.Context, t *testing.T, c *centre, name string) *ws {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws://"+c.http+"/v1/chat?channel=chat&lang=nb", &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"http://" + c.http}},
	})
	if err != nil {
		t.Fatalf("visitor dial at %s: %v", c.svc, err)
	}
	return newWS(ctx, t, conn, name)
}

// ws reads JSON frames into a channel so the test can wait for a type.
type ws struct {
	t      *testing.T
	ctx    context.Context
	name   string
	conn   *websocket.Conn
	frames chan map[string]any
}

func newWS(ctx context.Context, t *testing.T, conn *websocket.Conn, name string) *ws {
	c := &ws{t: t, ctx: ctx, name: name, conn: conn, frames: make(chan map[string]any, 256)}
	go func() {
		defer close(c.frames)
		for {
			var m map[string]any
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				return
			}
			c.frames <- m
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

func (c *ws) send(m map[string]any) {
	c.t.Helper()
	if err := wsjson.Write(c.ctx, c.conn, m); err != nil {
		c.t.Fatalf("%s: send %v: %v", c.name, m["type"], err)
	}
}

func (c *ws) expectWithin(typ string, d time.Duration) map[string]any {
	c.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("%s: socket closed waiting for %q", c.name, typ)
			}
			if m["type"] == typ {
				return m
			}
		case <-timeout:
			c.t.Fatalf("%s: no %q within %v", c.name, typ, d)
		}
	}
}

func (c *ws) expect(typ string) map[string]any {
	c.t.Helper()
	return c.expectWithin(typ, 30*time.Second)
}

// firstOffer waits for an offer at any of the volunteers.
func firstOffer(t *testing.T, vols ...*ws) (*ws, map[string]any) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		for _, v := range vols {
			select {
			case m, ok := <-v.frames:
				if ok && m["type"] == "offer" {
					return v, m
				}
			default:
			}
		}
		select {
		case <-timeout:
			t.Fatal("no volunteer got an offer")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// chatBothWays proves a conversation still carries messages.
func chatBothWays(t *testing.T, visitor, vol *ws, contact, tag string) {
	t.Helper()
	visitor.send(map[string]any{"type": "message", "id": "m-" + tag, "text": "visitor " + tag})
	if m := vol.expect("message"); m["text"] != "visitor "+tag {
		t.Fatalf("volunteer got %v", m)
	}
	vol.send(map[string]any{"type": "message", "contact": contact, "id": "r-" + tag, "text": "volunteer " + tag})
	if m := visitor.expect("message"); m["text"] != "volunteer "+tag {
		t.Fatalf("visitor got %v", m)
	}
}

// TestFaults runs the scenarios in order on one federation: starting it
// takes most of the time.
func TestFaults(t *testing.T) {
	f := up(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a, b, c := f.c["centre-a"], f.c["centre-b"], f.c["centre-c"]

	// Volunteers at B and C; none at A, so A's visitors overflow.
	volB := f.enrol(ctx, b, "b-kari")
	volC := f.enrol(ctx, c, "c-ola")
	f.waitFor(30*time.Second, "A to see free volunteers at B and C", func() bool {
		_, body, _ := f.api(a, http.MethodGet, "/v1/federation", "")
		return strings.Count(string(body), `"nb": 1`) >= 2
	})

	t.Run("crash of the centre holding an overflowed conversation", func(t *testing.T) {
		v1 := visitor(ctx, t, a, "visitor-at-a")
		holder, offer := firstOffer(t, volB, volC)
		if offer["from_centre"] != "centre-a" {
			t.Fatalf("overflowed offer should name centre-a: %v", offer)
		}
		contact1 := offer["contact"].(string)
		holder.send(map[string]any{"type": "accept", "contact": contact1})
		v1.expect("connected")
		chatBothWays(t, v1, holder, contact1, "before-crash")

		victim, other, otherVol, victimVolID := b, c, volC, "b-kari"
		if holder == volC {
			victim, other, otherVol, victimVolID = c, b, volB, "c-ola"
		}
		// A conversation not involving the victim: local at the other centre.
		v2 := visitor(ctx, t, other, "visitor-at-"+other.svc)
		offer2 := otherVol.expect("offer")
		contact2 := offer2["contact"].(string)
		otherVol.send(map[string]any{"type": "accept", "contact": contact2})
		v2.expect("connected")

		id := f.container(victim)
		killed := time.Now()
		f.docker("kill", id)
		v1.expectWithin("requeued", 5*time.Second)
		t.Logf("FIGURE time to requeue after docker kill of %s: %v", victim.svc, time.Since(killed).Round(10*time.Millisecond))

		chatBothWays(t, v2, otherVol, contact2, "during-crash")
		t.Logf("conversation at %s unaffected by the crash", other.svc)

		var notAlive time.Duration
		f.waitFor(60*time.Second, "A to stop seeing the victim alive", func() bool {
			v, err := f.federation(a)
			notAlive = time.Since(killed)
			return err == nil && v.gossip(victim.svc) != "alive"
		})
		f.waitFor(90*time.Second, "A to see the victim dead", func() bool {
			v, err := f.federation(a)
			return err == nil && v.gossip(victim.svc) == "dead"
		})
		t.Logf("FIGURE gossip at centre-a after the kill: %s not alive (suspect) after %v, dead after %v", victim.svc,
			notAlive.Round(10*time.Millisecond), time.Since(killed).Round(10*time.Millisecond))

		restarted := time.Now()
		f.docker("start", id)
		f.waitReady(victim, 2*time.Minute)
		readyAfter := time.Since(restarted)
		f.waitFor(60*time.Second, "the victim alive again at A and B/C", func() bool {
			for _, x := range []*centre{a, other} {
				v, err := f.federation(x)
				if err != nil || v.gossip(victim.svc) != "alive" {
					return false
				}
			}
			return true
		})
		t.Logf("FIGURE restart of %s: ready after %v, alive at the others after %v", victim.svc,
			readyAfter.Round(10*time.Millisecond), time.Since(restarted).Round(10*time.Millisecond))
		code, body, err := f.api(victim, http.MethodGet, "/v1/roster", "")
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), victimVolID) {
			t.Fatalf("restarted %s's roster lacks %s: %d %v %.300s", victim.svc, victimVolID, code, err, body)
		}
		// Wind the conversations down so the volunteers are free again.
		otherVol.send(map[string]any{"type": "end", "contact": contact2, "topics": []string{"family"}, "age_group": "13-15"})
		v1.conn.Close(websocket.StatusNormalClosure, "")
		v2.conn.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("kill of the roster leader", func(t *testing.T) {
		v, err := f.federation(a)
		if err != nil || v.Leader == "" {
			t.Fatalf("no leader known at A: %v", err)
		}
		leader := f.c[v.Leader]
		var rest []*centre
		for _, x := range f.all() {
			if x != leader {
				rest = append(rest, x)
			}
		}
		id := f.container(leader)
		killed := time.Now()
		f.docker("kill", id)
		newLeader := ""
		f.waitFor(60*time.Second, "a new leader", func() bool {
			for _, x := range rest {
				v, err := f.federation(x)
				if err == nil && v.Leader != "" && v.Leader != leader.svc {
					newLeader = v.Leader
					return true
				}
			}
			return false
		})
		t.Logf("FIGURE new Raft leader %s %v after docker kill of leader %s", newLeader, time.Since(killed).Round(10*time.Millisecond), leader.svc)
		w := rest[0]
		start := time.Now()
		f.waitFor(30*time.Second, "a roster write at "+w.svc, func() bool {
			body := fmt.Sprintf(`{"id":"%s-after","centre":%q,"alias":"After","channels":["chat"],"languages":["nb"],"capacity":1,"role":"volunteer"}`, w.svc, w.svc)
			code, _, err := f.api(w, http.MethodPost, "/v1/volunteers", body)
			return err == nil && code == http.StatusOK
		})
		t.Logf("FIGURE roster write at %s accepted %v after the new leader was seen", w.svc, time.Since(start).Round(10*time.Millisecond))
		f.docker("start", id)
		f.waitReady(leader, 2*time.Minute)
		f.waitFor(60*time.Second, "the old leader to see the new volunteer", func() bool {
			_, body, err := f.api(leader, http.MethodGet, "/v1/roster", "")
			return err == nil && strings.Contains(string(body), w.svc+"-after")
		})
		t.Logf("restarted %s caught up with the roster", leader.svc)
	})

	t.Run("pause and unpause", func(t *testing.T) {
		id := f.container(c)
		paused := time.Now()
		f.docker("pause", id)
		f.waitFor(60*time.Second, "A to see paused centre-c dead", func() bool {
			v, err := f.federation(a)
			return err == nil && v.gossip("centre-c") == "dead"
		})
		t.Logf("FIGURE docker pause of centre-c: dead at centre-a after %v", time.Since(paused).Round(10*time.Millisecond))
		un := time.Now()
		f.docker("unpause", id)
		f.waitFor(60*time.Second, "A to see centre-c alive again", func() bool {
			v, err := f.federation(a)
			return err == nil && v.gossip("centre-c") == "alive"
		})
		t.Logf("FIGURE docker unpause of centre-c: alive at centre-a after %v", time.Since(un).Round(10*time.Millisecond))
	})

	t.Run("network disconnect and connect", func(t *testing.T) {
		id := f.container(b)
		net := project + "_mesh"
		if out, err := exec.Command("docker", "network", "inspect", net).CombinedOutput(); err != nil {
			t.Skipf("network %s not found (compose naming?): %s", net, out)
		}
		cut := time.Now()
		f.docker("network", "disconnect", net, id)
		f.waitFor(60*time.Second, "A to see cut-off centre-b dead", func() bool {
			v, err := f.federation(a)
			return err == nil && v.gossip("centre-b") == "dead"
		})
		t.Logf("FIGURE network disconnect of centre-b: dead at centre-a after %v", time.Since(cut).Round(10*time.Millisecond))
		joined := time.Now()
		f.docker("network", "connect", "--alias", "centre-b", net, id)
		f.waitFor(90*time.Second, "A to see centre-b alive again", func() bool {
			v, err := f.federation(a)
			return err == nil && v.gossip("centre-b") == "alive"
		})
		t.Logf("FIGURE network connect of centre-b: alive at centre-a after %v", time.Since(joined).Round(10*time.Millisecond))
	})
}
