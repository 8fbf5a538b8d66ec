package sip

// A caller's urgency (issue 17): the centre's PBX asks its callers in the
// menu whether they need someone right now, and says so in the INVITE it
// sends the node. The standard way is RFC 3261's Priority header
// (section 20.26: "emergency", "urgent", "normal", "non-urgent", or an
// extension token); helpmesh takes "emergency" and "urgent" as urgent.
// X-Helpmesh-Urgent: 1 is accepted too, for a PBX whose dialplan cannot
// set Priority. Anything else, absent, too long or malformed, is a call
// like any other: a header the node cannot read never refuses a caller.
// docs/pbx.md has the Kamailio and Asterisk lines.

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Header names the PBX sets on an urgent call's INVITE.
const (
	HeaderPriority = "Priority"
	HeaderUrgent   = "X-Helpmesh-Urgent"
)

// maxPriorityLen bounds what is read of either header: the longest value
// taken is "emergency"; a longer one is not read further.
const maxPriorityLen = 32

// CallUrgent says whether an INVITE's Priority and X-Helpmesh-Urgent
// values mark the call urgent.
func CallUrgent(priority, xUrgent string) bool {
	if len(priority) <= maxPriorityLen {
		switch p := strings.TrimSpace(priority); {
		case strings.EqualFold(p, "emergency"), strings.EqualFold(p, "urgent"):
			return true
		}
	}
	return len(xUrgent) <= maxPriorityLen && strings.TrimSpace(xUrgent) == "1"
}

// requestUrgent reads an INVITE's urgency.
func requestUrgent(req *sip.Request) bool {
	value := func(name string) string {
		if h := req.GetHeader(name); h != nil {
			return h.Value()
		}
		return ""
	}
	return CallUrgent(value(HeaderPriority), value(HeaderUrgent))
}
