package switchboard

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestSupervisorOnAndOffDuty: going on duty counts a supervisor once
// (again from another console replaces, not adds), off duty and a replaced
// duty's end uncount correctly, every change pokes the node's OnChange and
// the watchers, and a closed desk refuses a new duty.
func TestSupervisorOnAndOffDuty(t *testing.T) {
	changes := 0
	sb := newTestBoard(func(c *Config) { c.OnChange = func() { changes++ } })
	watch, stop := sb.Changes()
	defer stop()
	poked := func() bool {
		select {
		case <-watch:
			return true
		default:
			return false
		}
	}

	if n := sb.SupervisorsOnDuty(); n != 0 {
		t.Fatalf("on duty before anyone went: %d", n)
	}
	before := changes
	d1, err := sb.GoOnDuty("sup-1", "sup-1", nopDuty{})
	if err != nil {
		t.Fatal(err)
	}
	if n := sb.SupervisorsOnDuty(); n != 1 || !d1.OnDuty() {
		t.Fatalf("after sup-1 on duty: count %d, OnDuty %v", n, d1.OnDuty())
	}
	if changes == before || !poked() {
		t.Fatal("going on duty did not call OnChange and poke the watcher")
	}

	// The same person from a second console: still one, the first duty is over.
	d1b, err := sb.GoOnDuty("sup-1", "sup-1", nopDuty{})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := sb.GoOnDuty("coord-2", "coord-2", nopDuty{})
	if err != nil {
		t.Fatal(err)
	}
	if n := sb.SupervisorsOnDuty(); n != 2 || d1.OnDuty() || !d1b.OnDuty() || !d2.OnDuty() {
		t.Fatalf("two people, three duties: count %d, d1 %v d1b %v d2 %v", n, d1.OnDuty(), d1b.OnDuty(), d2.OnDuty())
	}
	// Ending the replaced duty (its console closing) ends nothing else.
	poked()
	before = changes
	d1.OffDuty()
	if n := sb.SupervisorsOnDuty(); n != 2 || changes != before || poked() {
		t.Fatalf("a replaced duty's end changed things: count %d, OnChange %d->%d", n, before, changes)
	}
	d1b.OffDuty()
	d1b.OffDuty() // twice is harmless
	if n := sb.SupervisorsOnDuty(); n != 1 || d1b.OnDuty() || !poked() {
		t.Fatalf("after sup-1 off duty: count %d, OnDuty %v", n, d1b.OnDuty())
	}
	if v := sb.DeskView(); v.SupervisorsOnDuty != 1 {
		t.Fatalf("desk view counts %d on duty, want 1", v.SupervisorsOnDuty)
	}
	d2.OffDuty()
	if n := sb.SupervisorsOnDuty(); n != 0 {
		t.Fatalf("after everyone off duty: %d", n)
	}
	if _, err := sb.GoOnDuty("", "", nopDuty{}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("on duty without an id: %v, want ErrBadRequest", err)
	}
	sb.Close()
	if _, err := sb.GoOnDuty("sup-1", "sup-1", nopDuty{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("on duty at a closed desk: %v, want ErrClosed", err)
	}
}

// TestDeskView: the supervisors' snapshot shows the waiting contacts
// (channel, language, how long, longest first), the volunteers signed in
// (alias, channels switched on, conversations and how long each has
// lasted), and no contact id, text or anything else of a visitor.
func TestDeskView(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()

		// Ada takes one chat; Bo is signed in but switched off.
		ada, adaSink := signInAvailable(t, sb, chatVol("v-ada", 1, "nb"))
		bo := Volunteer{ID: "v-bo", Alias: "alias-bo", Channels: []string{ChannelChat, ChannelPhone}, Languages: []string{"en"}, Capacity: 2}
		if _, err := sb.SignIn(bo, &consoleSink{}); err != nil {
			t.Fatal(err)
		}
		talking, talkingVis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, ada, talking)
		synctest.Wait()
		if !talkingVis.has("connected alias-v-ada") {
			t.Fatalf("the first visitor was not connected: %v", talkingVis.lines())
		}
		if err := ada.Send(talking.ID(), "m1", "a secret the supervisor must not see"); err != nil {
			t.Fatal(err)
		}

		time.Sleep(30 * time.Second)
		// Two more wait: Ada is at capacity, Bo is off and speaks en only.
		first, _ := startContact(t, sb, ChannelChat, "en")
		time.Sleep(10 * time.Second)
		second, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(5 * time.Second)
		synctest.Wait()

		v := sb.DeskView()
		if len(v.Waiting) != 2 {
			t.Fatalf("waiting %+v, want 2", v.Waiting)
		}
		if w := v.Waiting[0]; w.Channel != ChannelChat || w.Language != "en" || w.Waited != 15*time.Second {
			t.Fatalf("longest waiting = %+v, want chat/en waited 15s", w)
		}
		if w := v.Waiting[1]; w.Channel != ChannelChat || w.Language != "nb" || w.Waited != 5*time.Second {
			t.Fatalf("second waiting = %+v, want chat/nb waited 5s", w)
		}
		if len(v.Volunteers) != 2 {
			t.Fatalf("volunteers %+v, want 2", v.Volunteers)
		}
		b, a := v.Volunteers[0], v.Volunteers[1] // by alias: alias-bo, alias-v-ada
		if a.Alias != "alias-v-ada" || !slices.Equal(a.Available, []string{ChannelChat}) || a.Capacity != 1 || a.SignedInFor != 45*time.Second {
			t.Fatalf("ada = %+v", a)
		}
		if len(a.Conversations) != 1 || a.Conversations[0] != (ConversationView{Channel: ChannelChat, Lasted: 45 * time.Second}) {
			t.Fatalf("ada's conversations = %+v, want one chat lasting 45s", a.Conversations)
		}
		if b.Alias != "alias-bo" || len(b.Available) != 0 || len(b.Conversations) != 0 {
			t.Fatalf("bo = %+v, want signed in, switched off, in no conversation", b)
		}
		// Nothing of a visitor: no contact id, no text, anywhere in it.
		dump := fmt.Sprintf("%#v", v)
		for _, secret := range []string{talking.ID(), first.ID(), second.ID(), "secret"} {
			if strings.Contains(strings.ToLower(dump), strings.ToLower(secret)) {
				t.Fatalf("the desk view holds %q: %s", secret, dump)
			}
		}

		// The conversation ends: Ada is free, the nb contact is offered to her.
		if err := ada.End(talking.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		v = sb.DeskView()
		if a := v.Volunteers[1]; len(a.Conversations) != 0 || !a.Ringing {
			t.Fatalf("after the end ada = %+v, want no conversation and an offer ringing", v.Volunteers[1])
		}
		if len(v.Waiting) != 2 || !v.Waiting[1].Ringing || v.Waiting[0].Ringing {
			t.Fatalf("after the end waiting = %+v, want the nb contact ringing", v.Waiting)
		}
		if !slices.Contains(adaSink.offered(), second.ID()) {
			t.Fatalf("ada was not offered the nb contact: %v", adaSink.offered())
		}
	})
}
