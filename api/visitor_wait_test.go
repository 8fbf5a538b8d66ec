package api

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Tests of the queued frame's wait (issue 14): what the visitor is told
// with a volunteer free, and with nobody on duty anywhere.

// dutyOverflow is gossip's view of the other centres for the estimate:
// free and busy volunteers, nobody to offer to.
type dutyOverflow struct {
	mu         sync.Mutex
	free, busy int
}

func (o *dutyOverflow) set(free, busy int) {
	o.mu.Lock()
	o.free, o.busy = free, busy
	o.mu.Unlock()
}

func (o *dutyOverflow) Candidates(string, string) []switchboard.Candidate { return nil }

func (o *dutyOverflow) OnDuty(string, string) (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.free, o.busy
}

func (o *dutyOverflow) Offer(context.Context, string, switchboard.OutgoingOffer) (switchboard.Answer, error) {
	return nil, errors.New("no centre to offer to in this test")
}

// wantEmergency checks a frame carries exactly the policy's numbers.
func wantEmergency(t *testing.T, f wireFrame) {
	t.Helper()
	var want []obj
	for _, n := range consensus.DefaultPolicy().EmergencyNumbers {
		want = append(want, obj{"name": n.Name, "number": n.Number})
	}
	if len(want) == 0 || !reflect.DeepEqual(f.EmergencyNumbers, want) {
		t.Fatalf("frame %s: want the policy's emergency numbers %v", f.raw, want)
	}
}

// availableConsole signs Kari in at rig's centre and switches her on for
// chat.
func availableConsole(t *testing.T, rig *chatRig) *sockPeer {
	t.Helper()
	con := rig.console("console", rig.signUp(testVolunteer("v-kari", "oslo", "Kari", 1), "correct horse battery"))
	con.expect("policy")
	con.send(obj{"type": "available", "channel": "chat", "on": true})
	for {
		if av := con.expect("availability"); av.Channels["chat"] {
			return con
		}
	}
}

func TestVisitorWaitFreeVolunteer(t *testing.T) {
	rig := newChatRig(t, nil)
	availableConsole(t, rig)
	vis := rig.mustDial("visitor", "/v1/chat?channel=chat&lang=nb", dialOpts{})
	q := vis.expect("queued")
	if *q.Position != 1 || q.Wait != string(switchboard.WaitFreeNow) || q.WaitMinutes != nil || q.EmergencyNumbers != nil {
		t.Fatalf("with a volunteer free: %s, want position 1, wait free_now and nothing else", q.raw)
	}
}

func TestVisitorWaitNoOneOnDutyAnywhere(t *testing.T) {
	ov := &dutyOverflow{}
	rig := newDeskRig(t, func(c *switchboard.Config) { c.Overflow = ov }, nil)
	vis := rig.mustDial("visitor", "/v1/chat?channel=chat&lang=nb", dialOpts{})
	q := vis.expect("queued")
	if *q.Position != 1 || q.Wait != string(switchboard.WaitNoOne) || q.WaitMinutes != nil {
		t.Fatalf("with nobody on duty anywhere: %s, want position 1 and wait no_one_on_duty", q.raw)
	}
	wantEmergency(t, q)

	// Another centre's volunteers come on duty, all busy: the estimate
	// follows while the visitor waits (within the re-send limit).
	ov.set(0, 2)
	rig.centre.sb.Kick() // what gossip's change callback does
	start := time.Now()
	q = vis.expect("queued")
	if q.Wait != string(switchboard.WaitSeveral) || q.WaitMinutes != nil {
		t.Fatalf("with two busy elsewhere: %s, want wait several", q.raw)
	}
	wantEmergency(t, q)
	if waited := time.Since(start); waited > switchboard.WaitResendEvery+2*time.Second {
		t.Errorf("the new estimate took %v", waited)
	}

	// Someone here comes on duty: the offer rings, and the visitor hears it.
	con := availableConsole(t, rig)
	q = vis.expect("queued")
	if q.Wait != string(switchboard.WaitFreeNow) || q.EmergencyNumbers != nil {
		t.Fatalf("with a volunteer ringing: %s, want wait free_now without numbers", q.raw)
	}
	con.expect("offer")
}
