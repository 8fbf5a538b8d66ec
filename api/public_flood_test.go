package api

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The public paths this release made heavier (the chat page's CSP and
// /v1/info's entry points are computed per request from the roster and
// gossip; catalogues come from the loaded set): one stranger hammering
// them from 8 connections gets answers, and a conversation under way
// carries every message and delivery meanwhile, each within a second.
func TestPublicPagesFloodCostsOthersNothing(t *testing.T) {
	rig := newChatRig(t, nil)
	desk := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	con := rig.console("console", desk)
	con.expect("policy")
	con.expect("availability")
	con.send(obj{"type": "available", "channel": "chat", "on": true})
	con.expect("availability")
	vis := rig.visitor("visitor", "nb")
	contact := connect(t, vis, con, "Kari")

	paths := []string{"/chat", "/v1/info?lang=nb", "/v1/info", "/i18n/languages.json", "/i18n/staff/nb.json"}
	var answered, other atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(rig.url + paths[(w+i)%len(paths)])
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					answered.Add(1)
				} else {
					other.Add(1)
				}
			}
		})
	}
	var slowest time.Duration
	// 8 round trips: within the visitor's message pace (10 at once,
	// switchboard.DefaultPace), so every one must arrive.
	// Each round trip after another 250 flood requests were answered, so
	// that the conversation runs through at least 2000 of them.
	for i := range 8 {
		deadline := time.Now().Add(60 * time.Second)
		for answered.Load()+other.Load() < int64(250*(i+1)) {
			if time.Now().After(deadline) {
				t.Fatalf("the flood made only %d requests in a minute", answered.Load()+other.Load())
			}
			time.Sleep(time.Millisecond)
		}
		begin := time.Now()
		vis.send(obj{"type": "message", "id": fmt.Sprintf("m%d", i), "text": "still here"})
		if m := con.expect("message"); m.Contact != contact || m.Text != "still here" {
			t.Fatalf("console got %s during the flood", m.raw)
		}
		vis.expect("delivered")
		con.send(obj{"type": "message", "contact": contact, "id": fmt.Sprintf("r%d", i), "text": "I am listening"})
		if m := vis.expect("message"); m.Text != "I am listening" {
			t.Fatalf("visitor got %s during the flood", m.raw)
		}
		con.expect("delivered")
		slowest = max(slowest, time.Since(begin))
	}
	close(stop)
	wg.Wait()
	t.Logf("flood: %d public requests answered 200, %d otherwise; slowest message round trip %v", answered.Load(), other.Load(), slowest.Round(time.Millisecond))
	if other.Load() != 0 || answered.Load() < 2000 {
		t.Fatalf("the flood: %d answered, %d otherwise; want every one answered (and at least 2000)", answered.Load(), other.Load())
	}
	if slowest > time.Second {
		t.Errorf("a message round trip took %v during the flood; want under 1 s", slowest)
	}
}
