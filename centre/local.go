package centre

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/localfed"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// Local describes whole centres run on loopback in one process, as the demo
// and the test rigs run a federation of them (see internal/localfed).
type Local struct {
	// Root holds each centre's data directory, Root/<id>. A directory from
	// an earlier run is started again as it was.
	Root string
	// Name gives a new centre's name as people say it (nil: its id).
	Name func(id string) string
	// HTTPAddr gives a new centre's HTTP listen address; i counts the
	// centres added before it (nil: a free loopback port).
	HTTPAddr func(id string, i int) string
	// Phone gives a new centre its PBX: the ingress's listen address, the
	// PBX's source addresses, and the address published in the roster for
	// other centres' PBXs (nil: no phone calls).
	Phone func(id string, i int) (node.PhoneConfig, string)
	// Web gives a new centre its web section (nil: none): TLS files, staff
	// and metrics listeners.
	Web func(id string, i int) node.WebConfig
	// Tune, if set, adjusts a centre's configuration before each start
	// (timeouts a test shortens).
	Tune   func(id string, cfg *Config)
	Timing timing.Profile
	Logger *slog.Logger
}

// Driver returns the localfed driver that makes, starts and stops these
// centres.
func (l Local) Driver() localfed.Driver[Config, *Centre] {
	return localfed.Driver[Config, *Centre]{
		Prepare: l.prepare,
		Start: func(ctx context.Context, cfg Config, join string) (*Centre, error) {
			cfg.Node.Join = join
			return Start(ctx, cfg)
		},
		Member: func(c *Centre) localfed.Member { return c },
		Stop: func(c *Centre) error {
			ctx, cancel := context.WithTimeout(context.Background(), stopWithin)
			defer cancel()
			return c.Stop(ctx)
		},
	}
}

// prepare initialises centre id's data directory, unless an earlier run
// did, and returns its configuration.
func (l Local) prepare(id string, i int) (Config, *consensus.Centre, error) {
	dir := filepath.Join(l.Root, id)
	var admit *consensus.Centre
	ok, err := Initialised(dir)
	if err != nil {
		return Config{}, nil, err
	}
	if !ok {
		fc, err := l.fileConfig(id, i)
		if err != nil {
			return Config{}, nil, err
		}
		res, err := node.Init(dir, fc)
		if err != nil {
			return Config{}, nil, err
		}
		admit = &consensus.Centre{ID: id, Name: fc.Name, PeerID: res.PeerID, Addrs: []string{fc.P2PAddr},
			GossipAddr: fc.GossipAddr, HTTPAddr: fc.HTTPAddr}
	}
	cfg, err := ConfigFromDir(dir, "", l.Logger)
	cfg.Node.Timing = l.Timing
	if l.Tune != nil {
		l.Tune(id, &cfg)
	}
	return cfg, admit, err
}

func (l Local) fileConfig(id string, i int) (node.FileConfig, error) {
	fc := node.FileConfig{Centre: id, Name: id}
	if l.Name != nil {
		fc.Name = l.Name(id)
	}
	var ports [3]int
	for j := range ports {
		p, err := localfed.FreePort()
		if err != nil {
			return fc, err
		}
		ports[j] = p
	}
	fc.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	if l.HTTPAddr != nil {
		fc.HTTPAddr = l.HTTPAddr(id, i)
	}
	fc.P2PAddr = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", ports[1])
	fc.GossipAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	if l.Phone != nil {
		fc.Phone, fc.SIPAddr = l.Phone(id, i)
	}
	if l.Web != nil {
		fc.Web = l.Web(id, i)
	}
	return fc, nil
}

// Initialised reports whether dir holds a centre (helpmesh init ran there).
func Initialised(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, node.ConfigFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, iofs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("look for a centre in %s: %w", dir, err)
}
