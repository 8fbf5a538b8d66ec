package api

import (
	"net/http"
	"testing"
	"time"
)

// A draining centre says so on /readyz (a load balancer sends visitors
// elsewhere), refuses a new chat before the upgrade with a clear error
// and Retry-After, and lets the visitor already here finish.
func TestDrainingCentreRefusesNewChatsAndFinishesOld(t *testing.T) {
	rig := newChatRig(t, nil)
	if r := rig.call(http.MethodGet, "/readyz", nil, nil); r.status != http.StatusOK {
		t.Fatalf("/readyz before drain: %d %s", r.status, r.body)
	}
	vis := rig.visitor("visitor", "nb")
	vis.expect("queued") // the contact has started
	drained := rig.centre.sb.Drain()

	wantError(t, "/readyz while draining", rig.call(http.MethodGet, "/readyz", nil, nil), http.StatusServiceUnavailable, "draining")
	rep := rig.call(http.MethodGet, "/v1/chat?channel=chat&lang=nb", nil, nil)
	wantError(t, "new chat while draining", rep, http.StatusServiceUnavailable, "draining")
	if rep.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on the refused chat")
	}
	select {
	case <-drained:
		t.Fatalf("drained with a visitor waiting: %+v", rig.centre.sb.Stats())
	default:
	}
	vis.send(map[string]string{"type": "end"})
	vis.expect("ended")
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("not drained after the last visitor left")
	}
	if st := rig.centre.sb.Stats().Total(); st.Offered != 1 || st.Abandoned != 1 {
		t.Fatalf("stats: %+v", st)
	}
}
