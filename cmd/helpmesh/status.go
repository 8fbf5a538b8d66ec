package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/overflow"
)

// Two ways to ask a centre how it is: status (the federation as it sees
// it, for a person or a script) and health (its readiness, for a container
// health check).

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	cf := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the federation view as JSON, for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var v node.FederationView
	if err := cf.call(ctx, http.MethodGet, "/v1/federation", nil, &v); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	printStatus(stdout, v)
	return nil
}

func printStatus(w io.Writer, v node.FederationView) {
	leader := v.Leader
	if leader == "" {
		leader = "(none known)"
	}
	fmt.Fprintf(w, "as seen from %s; roster leader: %s; applied index %d\n", v.Observer, leader, v.Raft.AppliedIndex)
	fmt.Fprintf(w, "gossip key: generation %d, in use here %d, keys installed %d\n\n", v.GossipKey.Generation, v.GossipKey.InUse, v.GossipKey.Installed)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CENTRE\tNAME\tGOSSIP\tRAFT\tACCEPTING\tFREE CHAT\tQUEUE\tSEEN")
	for _, c := range v.Centres {
		accepting, free, queue, seen := "-", "-", "-", "never"
		if a := c.Availability; a != nil {
			accepting = fmt.Sprint(a.Accepting)
			ch := a.Channels["chat"]
			free, queue = freePeople(ch), fmt.Sprint(ch.QueueLength)
			seen = fmt.Sprintf("%.1fs ago", c.AvailabilityAgeSeconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, c.Gossip, c.RaftRole, accepting, free, queue, seen)
	}
	_ = tw.Flush()
	// Only centres that publish one, under the table: most take no calls
	// from other centres' PBXs, and a column of dashes says nothing.
	sip := false
	for _, c := range v.Centres {
		if c.SIPAddr != "" {
			if !sip {
				fmt.Fprintln(w, "\nSIP ingress:")
				sip = true
			}
			fmt.Fprintf(w, "  %s  %s\n", c.ID, c.SIPAddr)
		}
	}
}

// freePeople is how many volunteers are free on a channel, each counted
// once however many languages they speak. A centre on a release before
// FreeVolunteers reports only counts per language: the largest of them is
// the most that is known, "at least" so many.
func freePeople(ch overflow.ChannelState) string {
	if ch.FreeVolunteers > 0 || len(ch.Free) == 0 {
		return fmt.Sprint(ch.FreeVolunteers)
	}
	most := 0
	for _, n := range ch.Free {
		most = max(most, n)
	}
	if most == 0 {
		return "0"
	}
	return fmt.Sprintf("%d+", most)
}

// cmdHealth probes a centre's health endpoint and fails unless it answers
// 200. It exists for container health checks: a FROM scratch image has no
// curl or wget, so the binary checks itself.
func cmdHealth(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "the endpoint to probe (/healthz or /readyz)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered HTTP %d", *url, resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
