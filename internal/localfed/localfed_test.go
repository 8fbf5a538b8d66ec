package localfed

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/helpmesh/helpmesh/consensus"
)

// fake is a centre without a network: it records what the federation asks
// of it.
type fake struct {
	id, join  string
	admitted  *[]string
	cuts      *[]string
	stopped   bool
	crashed   bool
	cfgMarker string
}

func (f *fake) Propose(_ context.Context, cmd consensus.Command) error {
	*f.admitted = append(*f.admitted, f.id+" admits "+cmd.Centre.ID)
	return nil
}

func (f *fake) P2PAddrs() []string { return []string{"/addr/" + f.id} }

type fakeCfg struct{ id, marker string }

func fakeDriver(admitted, cuts *[]string, existing map[string]bool) Driver[fakeCfg, *fake] {
	return Driver[fakeCfg, *fake]{
		Prepare: func(id string, i int) (fakeCfg, *consensus.Centre, error) {
			if existing[id] {
				return fakeCfg{id: id}, nil, nil
			}
			return fakeCfg{id: id}, &consensus.Centre{ID: id}, nil
		},
		Start: func(_ context.Context, cfg fakeCfg, join string) (*fake, error) {
			return &fake{id: cfg.id, join: join, admitted: admitted, cuts: cuts, cfgMarker: cfg.marker}, nil
		},
		Member: func(f *fake) Member { return f },
		Stop:   func(f *fake) error { f.stopped = true; return nil },
		Crash:  func(f *fake) { f.crashed = true },
		Cut: func(a, b *fake, cut bool) {
			*a.cuts = append(*a.cuts, fmt.Sprintf("%s-%s %v", a.id, b.id, cut))
		},
	}
}

func TestAdmitThroughFirstKillRestartCut(t *testing.T) {
	var admitted, cuts []string
	f := New(fakeDriver(&admitted, &cuts, map[string]bool{"c4": true}))
	ctx := context.Background()
	for _, id := range []string{"c1", "c2", "c3", "c4"} {
		if _, err := f.Add(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// c4's data directory holds a member already: no admission, no join.
	if want := []string{"c1 admits c2", "c1 admits c3"}; !slices.Equal(admitted, want) {
		t.Fatalf("admissions %v, want %v", admitted, want)
	}
	for id, join := range map[string]string{"c1": "", "c2": "/addr/c1", "c3": "/addr/c1", "c4": ""} {
		if m, _ := f.Running(id); m.join != join {
			t.Errorf("%s joined through %q, want %q", id, m.join, join)
		}
	}

	c2, _ := f.Running("c2")
	f.Kill("c2")
	if !c2.crashed || c2.stopped {
		t.Fatalf("kill: crashed %v, stopped %v", c2.crashed, c2.stopped)
	}
	if got := len(f.Live()); got != 3 {
		t.Fatalf("%d live after a kill, want 3", got)
	}
	if _, err := f.Restart(ctx, "c1", nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("restart of a running centre: %v", err)
	}
	if _, err := f.Restart(ctx, "c9", nil); !errors.Is(err, ErrUnknownCentre) {
		t.Fatalf("restart of an unknown centre: %v", err)
	}
	c2, err := f.Restart(ctx, "c2", func(c *fakeCfg) { c.marker = "new binary" })
	if err != nil {
		t.Fatal(err)
	}
	if c2.join != "" || c2.cfgMarker != "new binary" {
		t.Fatalf("restarted c2 joined through %q with config %q", c2.join, c2.cfgMarker)
	}
	f.Kill("c2")
	if c2, _ = f.Restart(ctx, "c2", nil); c2.cfgMarker != "new binary" {
		t.Fatal("a changed configuration was not kept for the next restart")
	}

	f.Partition("c3")
	f.Heal("c3")
	want := []string{"c3-c1 true", "c3-c2 true", "c3-c4 true", "c3-c1 false", "c3-c2 false", "c3-c4 false"}
	if !slices.Equal(cuts, want) {
		t.Fatalf("cuts %v, want %v", cuts, want)
	}

	live := f.Live()
	if err := f.StopAll(); err != nil {
		t.Fatal(err)
	}
	for _, m := range live {
		if !m.stopped {
			t.Errorf("%s not stopped", m.id)
		}
	}
	if len(f.Live()) != 0 {
		t.Fatal("centres still live after StopAll")
	}
}

func TestNoAdmissionWithoutTheFirst(t *testing.T) {
	var admitted, cuts []string
	f := New(fakeDriver(&admitted, &cuts, nil))
	ctx := context.Background()
	if _, err := f.Add(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	f.Kill("c1")
	if _, err := f.Add(ctx, "c2"); !errors.Is(err, ErrFirstNotRunning) {
		t.Fatalf("admission with the first centre down: %v", err)
	}
}
