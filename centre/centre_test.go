package centre_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/timing"
)

func ready(c *centre.Centre) bool {
	resp, err := http.Get("http://" + c.Addr() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Two whole centres on loopback: the second is admitted at the first and
// joins it, both serve their API, and a centre stopped and started again on
// its data directory is back in the federation and serving.
func TestLocalFederationStartStopRestart(t *testing.T) {
	local := centre.Local{Root: t.TempDir(), Timing: timing.Test, Logger: slog.New(slog.DiscardHandler)}
	f := fedtest.Start(t, local.Driver(), 2)
	c1, c2 := f.Member("c1"), f.Member("c2")
	for _, c := range []*centre.Centre{c1, c2} {
		if _, ok := c.Node().Roster().Centres["c2"]; !ok {
			t.Fatalf("%s's roster lacks c2", c.Node().Centre())
		}
		fedtest.Eventually(t, 20*time.Second, c.Node().Centre()+" ready", func() bool { return ready(c) })
	}
	addr := c2.Addr()
	f.Stop("c2")
	if ready(c2) {
		t.Fatal("c2 still answers after Stop")
	}
	// Stop is idempotent.
	if err := c2.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	c2 = f.Restart("c2")
	if c2.Addr() != addr {
		t.Errorf("c2 came back on %s, want its configured %s", c2.Addr(), addr)
	}
	fedtest.Eventually(t, 20*time.Second, "c2 ready again", func() bool { return ready(c2) })
	if got := len(f.Live()); got != 2 {
		t.Fatalf("%d centres live, want 2", got)
	}
}

// Shutdown drains a centre with nothing in progress at once, then stops it.
func TestShutdownDrainsThenStops(t *testing.T) {
	local := centre.Local{Root: t.TempDir(), Timing: timing.Test, Logger: slog.New(slog.DiscardHandler)}
	f := fedtest.Start(t, local.Driver(), 1)
	c := f.Member("c1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("an idle centre took %v to shut down", took)
	}
	if ready(c) {
		t.Fatal("the centre still answers after Shutdown")
	}
}
