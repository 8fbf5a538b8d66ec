package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
	"github.com/helpmesh/helpmesh/internal/siptest"
)

const callerSays = "Hello, I am calling because I could not sleep and I needed someone to talk to tonight."

// uas is the node's SIP side for the lab: a sipgo UAS on 127.0.0.1 that
// answers every INVITE with a PCMU answer for leg.
type uas struct {
	end    *siptest.End
	leg    *rtpLeg
	offer  chan string
	acked  chan struct{}
	byes   chan struct{}
	dialog *sipgo.DialogServerCache
}

func startUAS(t *testing.T) *uas {
	t.Helper()
	leg, err := newRTPLeg()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leg.conn.Close() })
	u := &uas{leg: leg, offer: make(chan string, 1), acked: make(chan struct{}, 1), byes: make(chan struct{}, 1)}
	u.end = siptest.NewEnd(t, "127.0.0.1", func(e *siptest.End) {
		u.dialog = sipgo.NewDialogServerCache(e.Client, e.Contact("node"))
		e.Srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			d, err := u.dialog.ReadInvite(req, tx)
			if err != nil {
				t.Errorf("uas: INVITE: %v", err)
				return
			}
			offer := string(req.Body())
			remote, pts, err := sdpAudio(offer)
			if err != nil {
				_ = d.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
				return
			}
			t.Logf("uas: offer audio payload types %v", pts)
			leg.remote.Store(&remote)
			u.offer <- offer
			ct := sip.ContentTypeHeader("application/sdp")
			if err := d.Respond(sip.StatusOK, "OK", []byte(answerSDP(leg.local())), &ct); err != nil {
				t.Errorf("uas: 200: %v", err)
			}
		})
		e.Srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = u.dialog.ReadAck(req, tx)
			u.acked <- struct{}{}
		})
		e.Srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = u.dialog.ReadBye(req, tx)
			u.byes <- struct{}{}
		})
	})
	return u
}

func (u *uas) uri(user string) string { return fmt.Sprintf("sip:%s@%s", user, u.end.Addr) }

// Trial 2: baresip calls a sipgo UAS that carries PCMU RTP itself.
func TestBaresipSipgoRTP(t *testing.T) {
	needLab(t)
	pbxlab.Need(t)
	dir := t.TempDir()
	aWAV := pbxlab.Speech(t, dir, callerSays, 12*time.Second)
	bWAV := pbxlab.Speech(t, dir, nodeSays, 8*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	u := startUAS(t)
	var mu sync.Mutex
	rec := &pcmuRecorder{}
	go u.leg.read(func(p *rtp.Packet, _ time.Time) {
		mu.Lock()
		rec.add(p.PayloadType, p.Timestamp, p.Payload)
		mu.Unlock()
	})
	caller := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "caller", Speak: aWAV})
	if err := caller.Dial(ctx, u.uri("queue")); err != nil {
		t.Fatal(err)
	}
	if e, err := caller.Await(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil || e.Type != "CALL_ESTABLISHED" {
		t.Fatalf("call not established: %v %v %v", e, err, caller.EventTypes())
	}
	offer := <-u.offer
	t.Logf("baresip offer:\n%s", offer)
	self0, _ := cpu(t)
	t0 := time.Now()
	if err := u.leg.sendWAVRTP(ctx, bWAV, 0x1234); err != nil {
		t.Fatal(err)
	}
	self1, _ := cpu(t)
	t.Logf("CPU of the Go process over %s of plain RTP both ways: %s", time.Since(t0).Round(time.Millisecond), self1-self0)
	time.Sleep(500 * time.Millisecond)
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-u.byes:
	case <-ctx.Done():
		t.Fatal("no BYE")
	}
	t.Logf("caller events: %v", caller.EventTypes())
	mu.Lock()
	t.Logf("node received %d PCMU packets, payload types %v", rec.packets, rec.pts)
	nodeWAV := filepath.Join(dir, "node-heard.wav")
	err := rec.write(nodeWAV)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	up := pbxlab.MustCorrelate(t, "caller speech vs node heard", aWAV, nodeWAV)
	down := pbxlab.MustCorrelate(t, "node speech vs caller heard", bWAV, caller.Heard())
	pbxlab.MustCorrelate(t, "caller's own recording of what it sent vs node heard", caller.Said(), nodeWAV)
	pbxlab.MustCorrelate(t, "mismatch: caller speech vs caller heard", aWAV, caller.Heard())
	pbxlab.MustCorrelate(t, "mismatch: node speech vs node heard", bWAV, nodeWAV)
	if up < 0.8 || down < 0.8 {
		t.Errorf("audio did not arrive: up %.3f down %.3f", up, down)
	}
	keep(t, aWAV, bWAV, nodeWAV, caller.Heard())
}
