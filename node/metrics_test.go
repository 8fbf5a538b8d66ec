package node

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/helpmesh/helpmesh/switchboard"
)

// metricsScenario is a scripted day at a federation of three centres:
// c1 owns every contact; c2 and c3 only answer c1's overflow, and c2 is
// killed while one of c1's visitors is talking to its volunteer.
type metricsScenario struct {
	f      *federation
	killed *prometheus.Registry // c2's registry, kept after the kill
	// secrets are strings no metric may carry: contact ids, volunteer ids
	// and aliases, message texts.
	secrets []string
}

func (sc *metricsScenario) secret(s ...string) { sc.secrets = append(sc.secrets, s...) }

func (sc *metricsScenario) visitor(t *testing.T, n *Node) (*switchboard.VisitorHandle, *visitorProbe) {
	t.Helper()
	vp := newVisitorProbe()
	h, err := n.Switchboard().StartContact("chat", "nb", vp)
	if err != nil {
		t.Fatal(err)
	}
	sc.secret(h.ID())
	return h, vp
}

func (sc *metricsScenario) volunteer(t *testing.T, n *Node, id, alias string) (*switchboard.Console, *consoleProbe) {
	t.Helper()
	sc.secret(id, alias)
	return signIn(t, n, id, alias)
}

func (sc *metricsScenario) say(t *testing.T, send func(id, text string) error, to chan string, id, text string) {
	t.Helper()
	sc.secret(text)
	if err := send(id, text); err != nil {
		t.Fatal(err)
	}
	expect(t, to, "message "+id+" "+text, 5*time.Second)
}

func candidatesAre(t *testing.T, n *Node, want ...string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%s to see candidates %v", n.Centre(), want), func() bool {
		var got []string
		for _, c := range n.router.Candidates("chat", "nb") {
			got = append(got, c.Centre)
		}
		return slices.Equal(got, want)
	})
}

var cat = switchboard.Categorisation{Topics: []string{"loneliness"}, AgeGroup: "16-18"}

// runMetricsScenario leaves, at c1: 7 contacts offered; 1 answered locally
// and ended, 2 answered by overflow and ended (one of them after its first
// answering centre, c2, was killed and it was requeued); 2 abandoned while
// waiting (one queued, one ringing at c3); 1 waiting; 1 in progress locally.
func runMetricsScenario(t *testing.T) *metricsScenario {
	f := newFederation(t, 3, fedOptions{})
	sc := &metricsScenario{f: f}
	c1, c2, c3 := f.node("c1"), f.node("c2"), f.node("c3")

	// X1 overflows to c2 (the only centre on duty) and is in progress there.
	kari, pKari := sc.volunteer(t, c2, "vol-c2-kari-8q1", "Kari-Alias-8q1")
	candidatesAre(t, c1, "c2")
	x1, vp1 := sc.visitor(t, c1)
	o1 := nextOffer(t, pKari, 10*time.Second)
	sc.secret(o1.Contact)
	if err := kari.Accept(o1.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp1.ev, "connected Kari-Alias-8q1", 5*time.Second)
	expect(t, pKari.ev, "connected c1", 5*time.Second)
	sc.say(t, x1.Send, pKari.ev, "x1a", "canary-visitor-text-x1-Zq9")
	sc.say(t, func(id, text string) error { return kari.Send(o1.Contact, id, text) }, vp1.ev, "k1a", "canary-volunteer-text-k1-Wp4")
	if err := kari.SetAvailable("chat", false); err != nil {
		t.Fatal(err)
	}

	// X2 overflows to c3, and c3's volunteer ends it.
	nils, pNils := sc.volunteer(t, c3, "vol-c3-nils-3m7", "Nils-Alias-3m7")
	candidatesAre(t, c1, "c3")
	x2, vp2 := sc.visitor(t, c1)
	o2 := nextOffer(t, pNils, 10*time.Second)
	if err := nils.Accept(o2.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp2.ev, "connected Nils-Alias-3m7", 5*time.Second)
	expect(t, pNils.ev, "connected c1", 5*time.Second)
	sc.say(t, x2.Send, pNils.ev, "x2a", "canary-visitor-text-x2-Hh2")
	if err := nils.End(o2.Contact, cat); err != nil {
		t.Fatal(err)
	}
	expect(t, vp2.ev, "ended  volunteer", 5*time.Second)
	if err := nils.SetAvailable("chat", false); err != nil {
		t.Fatal(err)
	}
	candidatesAre(t, c1)

	// X3 is answered at c1 and the visitor ends it; X4 is answered at c1
	// and still in progress at the end.
	ola, pOla := sc.volunteer(t, c1, "vol-c1-ola-5t2", "Ola-Alias-5t2")
	x3, vp3 := sc.visitor(t, c1)
	o3 := nextOffer(t, pOla, 5*time.Second)
	if err := ola.Accept(o3.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp3.ev, "connected Ola-Alias-5t2", 5*time.Second)
	sc.say(t, x3.Send, pOla.ev, "x3a", "canary-visitor-text-x3-Jj5")
	x3.End()
	expect(t, pOla.ev, "ended  visitor", 5*time.Second)
	if err := ola.End(o3.Contact, switchboard.Categorisation{Topics: []string{"school-work"}, AgeGroup: "13-15"}); err != nil {
		t.Fatal(err)
	}
	_, vp4 := sc.visitor(t, c1)
	o4 := nextOffer(t, pOla, 5*time.Second)
	if err := ola.Accept(o4.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp4.ev, "connected Ola-Alias-5t2", 5*time.Second)
	if err := ola.SetAvailable("chat", false); err != nil {
		t.Fatal(err)
	}

	// c2 dies mid-conversation: X1 is requeued at c1 and waits, since
	// nobody is on duty anywhere; then c3's volunteer takes it and the
	// visitor ends it.
	sc.killed = c2.Registry()
	f.kill("c2")
	expect(t, vp1.ev, "requeued 0", 5*time.Second)
	eventually(t, 5*time.Second, "X1 waiting at c1", func() bool {
		return c1.Switchboard().Stats().Contacts[switchboard.Key{Channel: "chat", Language: "nb"}].Waiting == 1
	})
	if err := nils.SetAvailable("chat", true); err != nil {
		t.Fatal(err)
	}
	o1b := nextOffer(t, pNils, 10*time.Second)
	if o1b.Contact != o1.Contact {
		t.Fatalf("c3 was offered %s, want the requeued contact", o1b.Contact)
	}
	if err := nils.Accept(o1b.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp1.ev, "connected Nils-Alias-3m7", 5*time.Second)
	x1.End()
	expect(t, pNils.ev, "ended  visitor", 5*time.Second)
	if err := nils.End(o1b.Contact, cat); err != nil {
		t.Fatal(err)
	}

	// X7 rings at c3 and its visitor leaves: abandoned, offer withdrawn.
	candidatesAre(t, c1, "c3")
	x7, _ := sc.visitor(t, c1)
	nextOffer(t, pNils, 10*time.Second)
	x7.End()
	expect(t, pNils.ev, "withdrawn withdrawn by the visitor's centre", 5*time.Second)
	if err := nils.SetAvailable("chat", false); err != nil {
		t.Fatal(err)
	}
	candidatesAre(t, c1)

	// X5 leaves while queued; X6 is still waiting at the end.
	x5, vp5 := sc.visitor(t, c1)
	expect(t, vp5.ev, "queued 1", 5*time.Second)
	x5.End()
	_, vp6 := sc.visitor(t, c1)
	expect(t, vp6.ev, "queued 1", 5*time.Second)
	return sc
}

// metricValue sums a family's samples whose labels include match.
func metricValue(mfs []*dto.MetricFamily, name string, match map[string]string) float64 {
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func gather(t *testing.T, r *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	mfs, err := r.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// Issue point 4: the contact counters conserve exactly over the surviving
// entry centres, with a killed answering centre and a requeued visitor.
func TestMetricsConservationWithKilledCentre(t *testing.T) {
	sc := runMetricsScenario(t)
	c1 := sc.f.node("c1")
	want := map[string]float64{
		"offered": 7, "local": 1, "overflow": 2, "abandoned": 2, "waiting": 1, "in_progress": 1,
	}
	var got map[string]float64
	var mfs []*dto.MetricFamily
	eventually(t, 10*time.Second, "c1's counters to settle", func() bool {
		mfs = gather(t, c1.Registry())
		got = contactTotals(mfs)
		return fmt.Sprint(got) == fmt.Sprint(want)
	})

	// Summed over every surviving centre (c3 owns no contacts: zeros).
	sum := map[string]float64{}
	for _, n := range sc.f.live() {
		for k, v := range contactTotals(gather(t, n.Registry())) {
			sum[k] += v
		}
	}
	if sum["offered"] != sum["local"]+sum["overflow"]+sum["abandoned"]+sum["waiting"]+sum["in_progress"] {
		t.Fatalf("not conserved over the federation: %v", sum)
	}
	if fmt.Sprint(sum) != fmt.Sprint(want) {
		t.Fatalf("federation totals %v, want %v", sum, want)
	}
	// The killed centre owned no contacts: nothing vanished with it.
	if v := metricValue(gather(t, sc.killed), "helpmesh_contacts_offered_total", nil); v != 0 {
		t.Fatalf("killed centre's registry says it owned %v contacts", v)
	}

	// Speed to answer counts first connections only: X1 (once), X2, X3, X4.
	if v := metricValue(mfs, "helpmesh_speed_to_answer_seconds", map[string]string{"channel": "chat"}); v != 4 {
		t.Fatalf("speed to answer observed %v times, want 4", v)
	}
	sent := func(to, result string) float64 {
		return metricValue(mfs, "helpmesh_overflow_offers_sent_total", map[string]string{"to": to, "result": result})
	}
	if sent("c2", "accepted") != 1 || sent("c3", "accepted") != 2 || sent("c3", "withdrawn") != 1 {
		t.Fatalf("offers sent: c2 accepted %v, c3 accepted %v, c3 withdrawn %v; want 1, 2, 1",
			sent("c2", "accepted"), sent("c3", "accepted"), sent("c3", "withdrawn"))
	}
	m3 := gather(t, sc.f.node("c3").Registry())
	received := func(result string) float64 {
		return metricValue(m3, "helpmesh_overflow_offers_received_total", map[string]string{"from": "c1", "result": result})
	}
	if received("accepted") != 2 || received("withdrawn") != 1 {
		t.Fatalf("c3 received: accepted %v, withdrawn %v; want 2, 1", received("accepted"), received("withdrawn"))
	}
	if v := metricValue(m3, "helpmesh_categorised_total", map[string]string{"topic": "loneliness"}); v != 2 {
		t.Fatalf("c3 categorised loneliness %v times, want 2", v)
	}
	if v := metricValue(mfs, "helpmesh_categorised_age_groups_total", map[string]string{"age_group": "13-15"}); v != 1 {
		t.Fatalf("c1 categorised age group 13-15 %v times, want 1", v)
	}
	if v := metricValue(mfs, "helpmesh_queue_length", map[string]string{"channel": "chat"}); v != 1 {
		t.Fatalf("c1 queue length %v, want 1", v)
	}
	if v := metricValue(mfs, "helpmesh_queue_oldest_wait_seconds", map[string]string{"channel": "chat"}); v <= 0 {
		t.Fatalf("c1 oldest wait %v, want > 0", v)
	}
	// Ola is off duty (not counted); at c3 Nils is off duty too.
	if v := metricValue(mfs, "helpmesh_volunteers", map[string]string{"channel": "chat"}); v != 0 {
		t.Fatalf("c1 volunteers on duty %v, want 0", v)
	}
	if v := metricValue(mfs, "helpmesh_up", nil); v != 1 {
		t.Fatalf("helpmesh_up %v", v)
	}
	if v := metricValue(mfs, "helpmesh_raft_voters", nil); v < 1 {
		t.Fatalf("raft voters %v", v)
	}
	if v := metricValue(mfs, "helpmesh_raft_state", nil); v != 1 {
		t.Fatalf("raft state sums to %v, want exactly one state", v)
	}
	eventually(t, 15*time.Second, "c1's gossip to see c2 gone", func() bool {
		m := gather(t, c1.Registry())
		return metricValue(m, "helpmesh_federation_members", map[string]string{"state": "alive"}) == 2 &&
			metricValue(m, "helpmesh_federation_members", nil) == 3
	})
}

func contactTotals(mfs []*dto.MetricFamily) map[string]float64 {
	return map[string]float64{
		"offered":     metricValue(mfs, "helpmesh_contacts_offered_total", nil),
		"local":       metricValue(mfs, "helpmesh_contacts_answered_total", map[string]string{"answered_by": "local"}),
		"overflow":    metricValue(mfs, "helpmesh_contacts_answered_total", map[string]string{"answered_by": "overflow"}),
		"abandoned":   metricValue(mfs, "helpmesh_contacts_abandoned_total", nil),
		"waiting":     metricValue(mfs, "helpmesh_contacts_waiting", nil),
		"in_progress": metricValue(mfs, "helpmesh_contacts_in_progress", nil),
	}
}

// allowedLabels are the only label names a node's registry may carry: ours,
// and those of libp2p's own metrics (listed from what it registers).
var allowedLabels = map[string]bool{
	// ours
	"centre": true, "channel": true, "language": true, "answered_by": true, "to": true, "from": true,
	"result": true, "state": true, "topic": true, "age_group": true, "le": true, "reason": true,
	// transfers (switchboard/transfer.go): fixed values
	"kind": true, "scope": true,
}

// Issue point 5: no metric of any centre carries a contact id, a volunteer
// id or alias, or message text, in a label or anywhere else; label names
// come from an allowlist. (Visitor addresses never reach a node: the API
// layer drops them; a documentation address stands in for one here.)
func TestMetricsCarryNoIdentity(t *testing.T) {
	sc := runMetricsScenario(t)
	sc.secret("203.0.113.7")
	regs := map[string]*prometheus.Registry{"c2 (killed)": sc.killed}
	for _, n := range sc.f.live() {
		regs[n.Centre()] = n.Registry()
	}
	names, values := map[string]bool{}, map[string]bool{}
	for who, r := range regs {
		for _, mf := range gather(t, r) {
			text := mf.String()
			for _, s := range sc.secrets {
				if strings.Contains(text, s) {
					t.Errorf("%s: metric %s carries %q", who, mf.GetName(), s)
				}
			}
			for _, m := range mf.Metric {
				for _, l := range m.Label {
					names[l.GetName()] = true
					if libp2pLabels[l.GetName()] {
						values[l.GetName()+"="+l.GetValue()] = true
					}
					if !allowedLabels[l.GetName()] && !libp2pLabels[l.GetName()] {
						t.Errorf("%s: metric %s has label %q, not in the allowlist", who, mf.GetName(), l.GetName())
					}
				}
			}
		}
	}
	var seen []string
	for n := range names {
		seen = append(seen, n)
	}
	sort.Strings(seen)
	t.Logf("label names in use: %v", seen)
	var vals []string
	for v := range values {
		vals = append(vals, v)
	}
	sort.Strings(vals)
	t.Logf("libp2p label values: %v", vals)
	if len(sc.secrets) < 15 {
		t.Fatalf("the scenario recorded only %d secrets", len(sc.secrets))
	}
}

// libp2pLabels are the label names of libp2p's own metrics (resource
// manager, identify, transports, swarm, ...). The node switches those off
// (libp2p.DisableMetrics); the list keeps this scan right if they return.
var libp2pLabels = map[string]bool{
	"dir": true, "early_muxer": true, "error": true, "event": true, "ip_version": true, "key_type": true,
	"muxer": true, "num_dials": true, "outcome": true, "protocol": true, "resource": true, "scope": true,
	"security": true, "subscriber_name": true, "support": true, "transport": true, "trigger": true,
}
