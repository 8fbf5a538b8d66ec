package node

import (
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/helpmesh/helpmesh/internal/channels"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helpmesh/helpmesh/overflow"
	"github.com/helpmesh/helpmesh/switchboard"
)

// The centre's KPIs (DESIGN.md, Metrics; docs/operations.md, Metrics).
//
// Every number is read at scrape time from one snapshot of the switchboard
// (switchboard.Stats, taken under its lock), so the contact counters and
// gauges of one scrape always conserve exactly:
//
//	offered = answered{local} + answered{overflow} + abandoned + waiting + in_progress
//
// per centre, channel and language. Labels are bounded: centre ids from the
// roster, the two channels, the policy's languages, topics and age groups,
// and fixed result and state names. Never a contact, visitor or volunteer id,
// an alias, or any text.
//
// Raft and memberlist report their own numbers through hashicorp/go-metrics,
// whose sink is one global per process. We do not wire that global: an
// in-process federation (the tests, the demo) runs several centres in one
// process, which would mix their numbers under one name, and a global would
// break the rule that each node owns its registry. What a coordinator needs
// of them is re-exported here from the centre's own view: Raft state, time
// since the leader was last heard from, applied index and voter count
// (consensus.Status), and the gossip members by state (overflow.Gossip.View).
//
// Two counters are not in this collector because they count as things happen
// rather than read a snapshot: helpmesh_gossip_refused_total{reason}
// (registered by overflow.StartGossip on this registry) and
// helpmesh_p2p_refused_total{reason} (the gater's and the join protocol's
// refusals, registered in Start). Their reasons are fixed lists; see
// internal/refusal for why refusals are counted and only sampled in the log.

// speedToAnswerBuckets are the speed-to-answer histogram's upper bounds in
// seconds. They include 60, the policy's default service level; a policy
// with another service_level_seconds is read between buckets (see
// docs/operations.md).
var speedToAnswerBuckets = switchboard.DefaultAnswerBuckets

// metricsCollector exports a node's KPIs. It reads the node at scrape time;
// the node pointer is swapped when a restarted centre reuses a registry.
type metricsCollector struct {
	node atomic.Pointer[Node]

	offered, answered, abandoned, returned, waiting, inProgress *prometheus.Desc
	speedToAnswer                                               *prometheus.Desc
	offersSent, offersReceived                                  *prometheus.Desc
	volunteers, queueLength, queueOldestWait                    *prometheus.Desc
	categorised, categorisedAgeGroups                           *prometheus.Desc
	federationMembers                                           *prometheus.Desc
	raftState, raftLastContact, raftApplied                     *prometheus.Desc
	raftVoters, up                                              *prometheus.Desc
	transitions                                                 *prometheus.Desc
	supportAsked, supportResults, timeToSupport                 *prometheus.Desc
	transfers                                                   *prometheus.Desc
	care, resting                                               *prometheus.Desc
	urgentContacts, urgentSpeedToAnswer                         *prometheus.Desc
}

func newMetricsCollector(centre string) *metricsCollector {
	c := prometheus.Labels{"centre": centre}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, c)
	}
	return &metricsCollector{
		offered:    d("helpmesh_contacts_offered_total", "Contacts that arrived at this centre.", "channel", "language"),
		answered:   d("helpmesh_contacts_answered_total", "Contacts of this centre whose conversation ended, by who answered it (local or overflow). A requeued contact counts once, when it finally ends.", "channel", "language", "answered_by"),
		abandoned:  d("helpmesh_contacts_abandoned_total", "Contacts of this centre that left (or were shut down) while waiting; for a phone call, the caller hung up before pick-up.", "channel", "language"),
		returned:   d("helpmesh_contacts_returned_total", "Phone calls handed back to the PBX's own queue: the reserved volunteer did not pick up, the call never arrived, or the answering centre was lost first.", "channel", "language"),
		waiting:    d("helpmesh_contacts_waiting", "Contacts of this centre queued or offered now.", "channel", "language"),
		inProgress: d("helpmesh_contacts_in_progress", "Contacts of this centre in a conversation now (answered here or elsewhere).", "channel", "language"),
		speedToAnswer: d("helpmesh_speed_to_answer_seconds",
			"Time from a contact's arrival to its first connection to a volunteer.", "channel"),
		offersSent:           d("helpmesh_overflow_offers_sent_total", "This centre's contacts offered to another centre, by result (accepted, declined, failed, withdrawn) and channel.", "to", "result", "channel"),
		offersReceived:       d("helpmesh_overflow_offers_received_total", "Other centres' contacts offered to this centre, by result (accepted, declined, withdrawn) and channel.", "from", "result", "channel"),
		volunteers:           d("helpmesh_volunteers", "Signed-in volunteers switched on for a channel: free (can take an offer now) or busy.", "channel", "state"),
		queueLength:          d("helpmesh_queue_length", "Contacts waiting in this centre's queue.", "channel"),
		queueOldestWait:      d("helpmesh_queue_oldest_wait_seconds", "How long the oldest waiting contact has waited since it arrived (0 if none).", "channel"),
		categorised:          d("helpmesh_categorised_total", "Topics recorded by this centre's volunteers at the end of contacts.", "topic"),
		categorisedAgeGroups: d("helpmesh_categorised_age_groups_total", "Age groups recorded by this centre's volunteers at the end of contacts.", "age_group"),
		federationMembers:    d("helpmesh_federation_members", "Centres in this centre's gossip view, by state.", "state"),
		raftState:            d("helpmesh_raft_state", "1 for this centre's current Raft state.", "state"),
		raftLastContact:      d("helpmesh_raft_leader_last_contact_seconds", "Seconds since this centre last heard from the Raft leader (0 on the leader, +Inf if never)."),
		raftApplied:          d("helpmesh_raft_applied_index", "The last Raft log index applied to this centre's roster."),
		raftVoters:           d("helpmesh_raft_voters", "Raft voters in this centre's configuration."),
		up:                   d("helpmesh_up", "1 while the centre's metrics are served."),
		supportAsked:         d("helpmesh_support_requests_total", "Support requests this centre's volunteers made, by reason (risk, abuse, unsure, tired, none).", "reason"),
		supportResults:       d("helpmesh_support_results_total", "How this centre's volunteers' support requests ended: taken (a supervisor here or elsewhere read along), unavailable (nobody took it) or cancelled.", "reason", "result"),
		timeToSupport:        d("helpmesh_time_to_support_seconds", "Time from a volunteer asking for support to a supervisor taking it."),
		transitions:          d("helpmesh_contact_transitions_total", "Changes of state of this centre's contacts (switchboard/contact.go: queued, offered, connected, ended, abandoned, returned).", "channel", "from", "to"),
		care:                 d("helpmesh_volunteer_care_total", "Times one of this centre's volunteers got no offers for their own sake (switchboard/care.go), by reason: cool_down (after a heavy conversation), break (after so many in a row), shift_over. Never per person.", "reason"),
		resting:              d("helpmesh_volunteers_resting", "Signed-in volunteers of this centre who get no offers now for their own sake, by reason (cool_down, break, shift_over).", "reason"),
		urgentContacts:       d("helpmesh_urgent_contacts_total", "Contacts that arrived at this centre marked urgent (the visitor's pre-chat choice, or the PBX's menu for a call); they are in helpmesh_contacts_offered_total too.", "channel"),
		urgentSpeedToAnswer: d("helpmesh_urgent_speed_to_answer_seconds",
			"Time from an urgent contact's arrival to its first connection to a volunteer; urgent contacts are in helpmesh_speed_to_answer_seconds too.", "channel"),
		transfers: d("helpmesh_transfers_total", "Transfers of this centre's contacts from one volunteer to another, carried out here as the contact's owner: kind (warm, cold), result (accepted, failed), scope (local: to the asking volunteer's own centre; centre: to another).", "kind", "result", "scope"),
	}
}

// registerMetrics puts the KPI collector on the node's own registry (never
// the default one). A registry reused by a restarted centre keeps its
// collector, which then reads the new node.
func (n *Node) registerMetrics() error {
	mc := newMetricsCollector(n.cfg.Centre)
	mc.node.Store(n)
	err := n.registry.Register(mc)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(*metricsCollector); ok {
			old.node.Store(n)
			return nil
		}
	}
	return err
}

func (mc *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		mc.offered, mc.answered, mc.abandoned, mc.returned, mc.waiting, mc.inProgress, mc.speedToAnswer,
		mc.offersSent, mc.offersReceived, mc.volunteers, mc.queueLength, mc.queueOldestWait,
		mc.categorised, mc.categorisedAgeGroups, mc.federationMembers, mc.raftState,
		mc.raftLastContact, mc.raftApplied, mc.raftVoters, mc.up, mc.transitions,
		mc.supportAsked, mc.supportResults, mc.timeToSupport, mc.transfers, mc.care, mc.resting,
		mc.urgentContacts, mc.urgentSpeedToAnswer,
	} {
		ch <- d
	}
}

var (
	raftStates   = []string{"Leader", "Follower", "Candidate", "Shutdown"}
	gossipStates = []string{overflow.StateAlive, overflow.StateSuspect, overflow.StateDead, overflow.StateLeft}
)

func (mc *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	n := mc.node.Load()
	if n == nil {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(mc.up, 1)

	st := n.sb.Stats()
	// Every language of the policy is exported (zeros included), so rates
	// and sums see a series before its first contact.
	keys := map[switchboard.Key]switchboard.Tally{}
	for _, l := range n.consensus.Roster().Policy.Languages {
		for _, c := range channels.All() {
			keys[switchboard.Key{Channel: c, Language: l}] = switchboard.Tally{}
		}
	}
	for k, t := range st.Contacts {
		keys[k] = t
	}
	for k, t := range keys {
		counter(mc.offered, t.Offered, k.Channel, k.Language)
		counter(mc.answered, t.AnsweredLocal, k.Channel, k.Language, switchboard.AnsweredByLocal)
		counter(mc.answered, t.AnsweredOverflow, k.Channel, k.Language, switchboard.AnsweredByOverflow)
		counter(mc.abandoned, t.Abandoned, k.Channel, k.Language)
		counter(mc.returned, t.Returned, k.Channel, k.Language)
		gauge(mc.waiting, float64(t.Waiting), k.Channel, k.Language)
		gauge(mc.inProgress, float64(t.InProgress), k.Channel, k.Language)
	}
	for _, c := range channels.All() {
		h := st.SpeedToAnswer[c]
		buckets := make(map[float64]uint64, len(speedToAnswerBuckets))
		for _, le := range speedToAnswerBuckets {
			buckets[le] = h.Buckets[le]
		}
		ch <- prometheus.MustNewConstHistogram(mc.speedToAnswer, h.Count, h.Sum, buckets, c)
		// Urgent contacts apart, zeros included, so the dashboard's urgent
		// panel and rules see a series before the first urgent contact.
		counter(mc.urgentContacts, st.UrgentContacts[c], c)
		u := st.UrgentSpeedToAnswer[c]
		ub := make(map[float64]uint64, len(speedToAnswerBuckets))
		for _, le := range speedToAnswerBuckets {
			ub[le] = u.Buckets[le]
		}
		ch <- prometheus.MustNewConstHistogram(mc.urgentSpeedToAnswer, u.Count, u.Sum, ub, c)
		v := st.Volunteers[c]
		gauge(mc.volunteers, float64(v.Free), c, "free")
		gauge(mc.volunteers, float64(v.Busy), c, "busy")
		q := st.Queues[c]
		gauge(mc.queueLength, float64(q.Length), c)
		gauge(mc.queueOldestWait, q.OldestWait.Seconds(), c)
	}
	for k, v := range st.Transitions {
		counter(mc.transitions, v, k.Channel, string(k.From), string(k.To))
	}
	for k, v := range st.OffersSent {
		counter(mc.offersSent, v, k.Centre, k.Result, k.Channel)
	}
	for k, v := range st.OffersReceived {
		counter(mc.offersReceived, v, k.Centre, k.Result, k.Channel)
	}
	for _, reason := range append(slices.Clone(switchboard.SupportReasons), switchboard.SupportNoReason) {
		counter(mc.supportAsked, st.SupportAsked[reason], reason)
		for _, result := range []string{switchboard.SupportResultTaken, switchboard.SupportResultUnavailable, switchboard.SupportResultCancelled} {
			counter(mc.supportResults, st.SupportRequests[switchboard.SupportKey{Reason: reason, Result: result}], reason, result)
		}
	}
	ch <- prometheus.MustNewConstHistogram(mc.timeToSupport, st.TimeToSupport.Count, st.TimeToSupport.Sum, st.TimeToSupport.Buckets)
	// Every combination, zeros included, so a dashboard sees the series
	// before the first transfer.
	for _, kind := range []string{switchboard.TransferWarm, switchboard.TransferCold} {
		for _, result := range []string{switchboard.TransferAccepted, switchboard.TransferFailed} {
			for _, scope := range []string{switchboard.TransferLocal, switchboard.TransferCentre} {
				counter(mc.transfers, st.Transfers[switchboard.TransferKey{Kind: kind, Result: result, Scope: scope}], kind, result, scope)
			}
		}
	}
	// Every reason, zeros included (Stats fills them).
	for _, reason := range switchboard.CareReasons {
		counter(mc.care, st.Care[reason], reason)
		gauge(mc.resting, float64(st.Resting[reason]), reason)
	}
	for t, v := range st.Topics {
		counter(mc.categorised, v, t)
	}
	for a, v := range st.AgeGroups {
		counter(mc.categorisedAgeGroups, v, a)
	}

	members := map[string]int{}
	for _, s := range n.gossip.View() {
		members[s.State]++
	}
	for _, s := range gossipStates {
		gauge(mc.federationMembers, float64(members[s]), s)
	}

	rs := n.consensus.Status()
	for _, s := range raftStates {
		v := 0.0
		if rs.State == s {
			v = 1
		}
		gauge(mc.raftState, v, s)
	}
	last := math.Inf(1)
	switch {
	case rs.State == "Leader":
		last = 0
	case !rs.LastContact.IsZero():
		last = time.Since(rs.LastContact).Seconds()
	}
	gauge(mc.raftLastContact, last)
	gauge(mc.raftApplied, float64(rs.AppliedIndex))
	gauge(mc.raftVoters, float64(len(rs.Voters)))
}
