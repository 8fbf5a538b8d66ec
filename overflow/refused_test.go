package overflow

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helpmesh/helpmesh/internal/logsink"
)

func lineCount(s string) int { return strings.Count(s, "\n") }

// wrongKeyPacket is what a node with our label but another key sends: the
// label header, then memberlist's encryption format version 1 ([1][nonce]
// [AES-GCM sealed message]) authenticated with the label.
func wrongKeyPacket(t *testing.T, label string) []byte {
	t.Helper()
	block, err := aes.NewCipher(testKey(9))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce)
	msg := append([]byte{1}, nonce...)
	msg = gcm.Seal(msg, nonce, []byte{byte(0) /* pingMsg */, 1, 2, 3}, []byte(label))
	out, err := memberlist.AddLabelHeaderToPacket(msg, label)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// refusedSeries reads helpmesh_gossip_refused_total from reg, by reason.
func refusedSeries(t *testing.T, reg *prometheus.Registry, centre string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "helpmesh_gossip_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["centre"] != centre {
				t.Errorf("refused counter has centre %q, want %q", labels["centre"], centre)
			}
			out[labels["reason"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

// An outsider floods a running node's gossip port on loopback with 2,000
// datagrams that lack the federation's label or key, a few junk TCP streams,
// and a real memberlist join under another key. Every refusal is counted, by
// reason, on the node's registry; the log gets a bounded number of lines
// (before sampling it got one ERROR line per packet: 2,000 lines, 322 KB),
// and none of them carries the text the outsider put in its label.
func TestGossipRefusalsSampledAndCounted(t *testing.T) {
	const (
		perKind = 500 // four kinds of datagram
		batch   = 100
		forged  = "FORGED-LINE"
	)
	sink := &logsink.Buffer{}
	reg := prometheus.NewRegistry()
	cfg := testConfigFor("c00")
	cfg.Logger = slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Registry = reg
	g := startNode(t, cfg)
	before := sink.String()

	evilLabel := "other\nlevel=ERROR msg=" + forged
	datagrams := map[string][][]byte{}
	for i := range perKind {
		junk := make([]byte, 40)
		_, _ = rand.Read(junk)
		junk[0] = byte(1 + i%200) // never the label header's 244
		other, err := memberlist.AddLabelHeaderToPacket(junk, evilLabel)
		if err != nil {
			t.Fatal(err)
		}
		datagrams[RefusedDecrypt] = append(datagrams[RefusedDecrypt], wrongKeyPacket(t, testLabel))
		datagrams[RefusedLabel] = append(datagrams[RefusedLabel], other, junk)
		// A label header whose length runs past the end of the packet.
		datagrams[RefusedMalformed] = append(datagrams[RefusedMalformed], []byte{244, 200, 'x'})
	}
	var all [][]byte
	for i := range perKind {
		all = append(all, datagrams[RefusedDecrypt][i], datagrams[RefusedLabel][2*i],
			datagrams[RefusedLabel][2*i+1], datagrams[RefusedMalformed][i])
	}
	if len(all) != 2000 {
		t.Fatalf("test bug: %d datagrams", len(all))
	}

	udp, err := net.Dial("udp", g.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	// Sent in batches, each waited for, so that a full socket buffer cannot
	// drop datagrams and the count can be checked exactly.
	for start := 0; start < len(all); start += batch {
		for _, d := range all[start : start+batch] {
			if _, err := udp.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		want := uint64(start + batch)
		waitFor(t, 10*time.Second, "the node counting the datagrams sent", func() bool { return g.RefusedCount("") >= want })
	}

	// Streams: junk without a label; our label but plaintext; our label and
	// an "encrypted" message no key opens; a label header cut short.
	streams := []struct {
		reason string
		send   []byte
	}{
		{RefusedLabel, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{RefusedPlaintext, []byte{0, 1, 2, 3}},
		{RefusedDecrypt, func() []byte {
			b := []byte{10 /* encryptMsg */, 0, 0, 0, 40}
			junk := make([]byte, 40)
			_, _ = rand.Read(junk)
			return append(b, junk...)
		}()},
		{RefusedMalformed, []byte{244, 10, 'a'}},
	}
	for _, s := range streams {
		c, err := net.Dial("tcp", g.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		send := s.send
		if s.reason == RefusedPlaintext || s.reason == RefusedDecrypt {
			send = append([]byte{244, byte(len(testLabel))}, append([]byte(testLabel), send...)...)
		}
		_, _ = c.Write(send)
		if s.reason == RefusedMalformed {
			_ = c.(*net.TCPConn).CloseWrite() // the label's promised bytes never come
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, c) // memberlist answers or hangs up
		_ = c.Close()
	}
	waitFor(t, 10*time.Second, "the node counting the streams", func() bool { return g.RefusedCount("") >= 2000+uint64(len(streams)) })

	// And a real node with our label and another key tries to join.
	intruderCfg := testConfigFor("intruder")
	intruderCfg.Key = testKey(2)
	intruder := startNode(t, intruderCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := intruder.Join(ctx, []string{g.LocalAddr()}); err == nil {
		t.Fatalf("intruder joined (%d answered)", n)
	}
	waitFor(t, 10*time.Second, "the node counting the intruder's join", func() bool {
		return g.RefusedCount(RefusedDecrypt) >= perKind+2
	})

	flood := strings.TrimPrefix(sink.String(), before)
	got := refusedSeries(t, reg, "c00")
	want := map[string]float64{
		RefusedLabel:     2*perKind + 1,
		RefusedMalformed: perKind + 1,
		RefusedPlaintext: 1,
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("helpmesh_gossip_refused_total{reason=%q} = %v, want %v", reason, got[reason], n)
		}
	}
	if got[RefusedDecrypt] < perKind+2 {
		t.Errorf("helpmesh_gossip_refused_total{reason=decrypt} = %v, want >= %d", got[RefusedDecrypt], perKind+2)
	}
	var total float64
	for _, v := range got {
		total += v
	}

	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	all2 := strings.TrimPrefix(sink.String(), before)
	t.Logf("refused %v (total %v) for 2000 datagrams, %d streams and one join; %d lines (%d bytes) logged during the flood, %d by the end of Stop:\n%s",
		got, total, len(streams), lineCount(flood), len(flood), lineCount(all2), all2)
	if lineCount(flood) > 5 {
		t.Errorf("%d lines logged during the flood, want at most 5", lineCount(flood))
	}
	if n := strings.Count(all2, "refused"); n > 5 || n < 1 {
		t.Errorf("%d refusal lines by the end, want 1..5", n)
	}
	if strings.Contains(all2, forged) || strings.Contains(all2, "unacceptable label") {
		t.Errorf("the outsider's label text, or memberlist's raw refusal line, reached the log")
	}
	if !strings.Contains(all2, "refused=") {
		t.Errorf("Stop did not log the summary of refusals since the first line")
	}
}

func TestClassifyRefused(t *testing.T) {
	for _, tc := range []struct {
		msg                     string
		reason, transport, from string
	}{
		{`memberlist: discarding packet with unacceptable label "x from=1.1.1.1:1": from=127.0.0.1:5`, RefusedLabel, "udp", "127.0.0.1:5"},
		{`memberlist: Decrypt packet failed: no installed keys could decrypt the message from=[::1]:7`, RefusedDecrypt, "udp", "[::1]:7"},
		{`memberlist: cannot decode label; packet has been truncated from=10.0.0.1:2`, RefusedMalformed, "udp", "10.0.0.1:2"},
		{`memberlist: failed to receive: encryption is configured but remote state is not encrypted from=10.0.0.1:3`, RefusedPlaintext, "tcp", "10.0.0.1:3"},
		{`memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.1:4`, RefusedDecrypt, "tcp", "10.0.0.1:4"},
		{`memberlist: failed to receive: read tcp 1->2: i/o timeout from=10.0.0.1:4`, RefusedMalformed, "tcp", "10.0.0.1:4"},
		{`memberlist: failed to receive and remove the stream label header: EOF from=10.0.0.1:6`, RefusedMalformed, "tcp", "10.0.0.1:6"},
		{`memberlist: discarding stream with unacceptable label "": from=10.0.0.1:8`, RefusedLabel, "tcp", "10.0.0.1:8"},
	} {
		r, ok := classifyRefused(tc.msg)
		if !ok || r.reason != tc.reason || r.transport != tc.transport || r.from != tc.from {
			t.Errorf("classifyRefused(%q) = %+v, %v; want %s/%s from %s", tc.msg, r, ok, tc.reason, tc.transport, tc.from)
		}
	}
	for _, msg := range []string{
		"memberlist: Suspect c02 has failed, no acks received",
		"memberlist: Failed to send gossip to 127.0.0.1:1",
		"memberlist: Got invalid checksum for UDP packet: 1, 2", // after decryption: a member's
	} {
		if r, ok := classifyRefused(msg); ok {
			t.Errorf("classifyRefused(%q) = %+v, want not a refusal", msg, r)
		}
	}
}
