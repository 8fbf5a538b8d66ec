package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/helpmesh/helpmesh/api"
)

// cmdGossipKey runs `helpmesh gossip-key rotate`: the centre it talks to
// makes a fresh gossip key and proposes it to the roster; every admitted
// centre switches to it, and a removed centre is shut out of the gossip.
func cmdGossipKey(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) < 1 || args[0] != "rotate" {
		return fmt.Errorf("gossip-key: want 'rotate'")
	}
	fs := flag.NewFlagSet("gossip-key rotate", flag.ContinueOnError)
	cf := addClientFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var resp api.GossipKeyResponse
	if err := cf.call(ctx, http.MethodPost, "/v1/federation/gossip-key", struct{}{}, &resp); err != nil {
		return fmt.Errorf("gossip-key rotate: %w", err)
	}
	fmt.Fprintf(stdout, "gossip key rotated to generation %d\n", resp.Generation)
	fmt.Fprintf(stdout, "every centre encrypts with it within seconds and drops the old key after the grace period;\n")
	fmt.Fprintf(stdout, "check each centre with: helpmesh status --dir DIR (gossip key: generation %d, in use here %d, keys installed 1)\n",
		resp.Generation, resp.Generation)
	return nil
}
