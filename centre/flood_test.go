package centre_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/siptest"
	"github.com/helpmesh/helpmesh/switchboard"
)

// chatSinks are one chat's two ends, as channels.
type chatVisitor struct{ events chan switchboard.Event }

func (chatVisitor) Queued(int, switchboard.Estimate) {}
func (chatVisitor) Connected(string)                 {}
func (v chatVisitor) Event(e switchboard.Event) {
	select {
	case v.events <- e:
	default:
	}
}
func (chatVisitor) Requeued(int)  {}
func (chatVisitor) Closed(string) {}

type chatConsole struct {
	offers chan string
	events chan switchboard.Event
}

func (c chatConsole) Offer(o switchboard.Offer)   { c.offers <- o.Contact }
func (chatConsole) OfferWithdrawn(string, string) {}
func (chatConsole) Connected(string, string)      {}
func (c chatConsole) Event(_ string, e switchboard.Event) {
	select {
	case c.events <- e:
	default:
	}
}
func (chatConsole) Lost(string, int)                       {}
func (chatConsole) Availability(map[string]bool, int, int) {}

// oneChat runs a whole chat at sb: start, offer, accept, a message each
// way, end. Each step must happen within a deadline.
func oneChat(sb *switchboard.Switchboard, con *switchboard.Console, cc chatConsole, n int) error {
	vis := chatVisitor{events: make(chan switchboard.Event, 8)}
	h, err := sb.StartContact(switchboard.ChannelChat, "nb", vis)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	var id string
	select {
	case id = <-cc.offers:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no offer")
	}
	if err := con.Accept(id); err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	if err := h.Send(fmt.Sprintf("v%d", n), "hei"); err != nil {
		return fmt.Errorf("visitor send: %w", err)
	}
	for {
		select {
		case e := <-cc.events:
			if e.Kind != switchboard.EventMessage {
				continue
			}
		case <-time.After(5 * time.Second):
			return fmt.Errorf("the volunteer never got the message")
		}
		break
	}
	if err := con.Send(id, fmt.Sprintf("w%d", n), "hei, jeg er her"); err != nil {
		return fmt.Errorf("volunteer send: %w", err)
	}
	for {
		select {
		case e := <-vis.events:
			if e.Kind != switchboard.EventMessage {
				continue
			}
		case <-time.After(5 * time.Second):
			return fmt.Errorf("the visitor never got the answer")
		}
		break
	}
	h.End()
	return con.End(id, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"})
}

// sipp floods a centre's SIP ingress, from its own PBX's address (INVITEs
// for the overflow queue, answered 480 with nobody free for calls) and
// from a stranger's (refused, then dropped unparsed), while the centre
// serves chats: every chat still runs to its end, each step within its
// deadline, and the ingress and the API answer afterwards.
func TestSIPFloodLeavesTheCentreServingChats(t *testing.T) {
	sipp := siptest.NeedSipp(t)
	f := phoneFed(t, 1, nil)
	c1 := f.Member("c1")
	sb := c1.Node().Switchboard()
	cc := chatConsole{offers: make(chan string, 4), events: make(chan switchboard.Event, 8)}
	con, err := sb.SignIn(switchboard.Volunteer{ID: "v-chat", Alias: "Kari", Channels: []string{switchboard.ChannelChat}, Languages: []string{"nb"}, Capacity: 1}, cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.SetAvailable(switchboard.ChannelChat, true); err != nil {
		t.Fatal(err)
	}

	scenario, err := filepath.Abs("../sip/testdata/uac_flood.xml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	flood := func(from string, calls, rate int, within string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, sipp, "-sf", scenario, c1.SIPAddr(), "-i", from, "-s", "queue-nb",
			"-m", fmt.Sprint(calls), "-r", fmt.Sprint(rate), "-l", fmt.Sprint(calls), "-nostdin", "-timeout", within)
		cmd.Dir = t.TempDir()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	start := time.Now()
	pbx := flood("127.0.0.1", 3000, 600, "30s")
	stranger := flood("127.0.0.2", 6000, 1500, "30s")

	var chats, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := oneChat(sb, con, cc, n); err != nil {
				failed.Add(1)
				t.Errorf("chat %d during the flood: %v", n, err)
				return
			}
			chats.Add(1)
			time.Sleep(5 * time.Millisecond) // a busy centre's pace, not a spin
		}
	})
	pbxErr := pbx.Wait()
	pbxTook := time.Since(start)
	// The stranger's unanswered INVITEs would keep sipp retransmitting for
	// half a minute: it has sent its flood by now.
	_ = stranger.Process.Kill()
	_ = stranger.Wait() // the stranger's INVITEs are refused or dropped: sipp reports failures, as it should
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if pbxErr != nil {
		t.Fatalf("the PBX's flood: not every INVITE got 302 or 480 with Retry-After: %v", pbxErr)
	}
	t.Logf("FIGURE sip flood at a centre: 3000 PBX INVITEs at 600/s (all answered in %v) and a stranger's INVITEs at 1500/s meanwhile (%v); %d whole chats served meanwhile, %d failed",
		pbxTook.Round(time.Millisecond), took.Round(time.Millisecond), chats.Load(), failed.Load())
	if chats.Load() == 0 {
		t.Fatal("no chat completed during the flood")
	}
	if err := oneChat(sb, con, cc, -1); err != nil {
		t.Fatalf("a chat after the flood: %v", err)
	}
	fedtest.Eventually(t, 5*time.Second, "the API ready", func() bool {
		resp, err := http.Get("http://" + c1.Addr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
