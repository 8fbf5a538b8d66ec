package centre

// Phone calls: the SIP ingress for the centre's PBX, wired to the desk.
// The ingress asks the desk where a queued call goes (callRouter), and the
// desk hands each held call to the ingress's token store (callTokens), which
// the ingress redeems when the call arrives.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/sip"
	"github.com/helpmesh/helpmesh/switchboard"
)

// SIPConfig configures a centre's SIP ingress for its own PBX.
type SIPConfig struct {
	// Listen is the UDP address the ingress listens on ("" : no ingress,
	// and the centre takes no calls).
	Listen string
	// Host is the IP the ingress writes in its Via and Record-Route; needed
	// when Listen binds every address (0.0.0.0).
	Host string
	// PBX lists the source addresses of the centre's PBX; nobody else may
	// send a request.
	PBX []netip.Prefix
	// Peers are more senders of calls other centres redirect here, beyond
	// the phone systems the roster publishes.
	Peers []netip.Prefix
	// RouteTimeout and RingTimeout: see sip.Config (0: its defaults).
	RouteTimeout, RingTimeout time.Duration
	// MaxHeldCalls: see sip.Config (0: its default).
	MaxHeldCalls int
	// Browser makes the node the centre's phone, for a centre without a
	// PBX (nil: the PBX answers, issue 12); PBX then lists the trunk's
	// addresses.
	Browser *BrowserPhoneConfig
}

// ErrNoCentreSIP means the centre that holds a call has no SIP address in
// the roster (it took the call before its address was published): the PBX
// gets 480 and asks again, and the hold lapses.
var ErrNoCentreSIP = errors.New("answering centre has no SIP address in the roster")

// callTokens gives the desk's held calls to the ingress's token store.
type callTokens struct{ store *sip.TokenStore }

func (t callTokens) Issue(c *switchboard.Call, lease time.Duration) string {
	return t.store.Issue(c, lease)
}

var _ sip.Call = (*switchboard.Call)(nil)

// callRouter answers the ingress for a queued call: a free phone volunteer
// here or elsewhere, as sip:TOKEN@<the answering centre's PBX>.
type callRouter struct {
	n *node.Node
	// ownSIP is this centre's published address: the roster may not list
	// it yet when the first call comes.
	ownSIP string
}

func (r callRouter) RouteCall(ctx context.Context, language string, urgent bool) (sip.Decision, error) {
	placed, err := r.n.Switchboard().PlaceCallWith(ctx, language, switchboard.ContactOptions{Urgent: urgent})
	switch {
	case errors.Is(err, switchboard.ErrNoVolunteer), errors.Is(err, switchboard.ErrDraining):
		return sip.Decision{}, nil // 480: the PBX keeps the caller and asks again
	case err != nil:
		return sip.Decision{}, err
	}
	contact, err := r.contactFor(placed)
	if err != nil {
		return sip.Decision{}, err
	}
	return sip.Decision{Contact: contact}, nil
}

// contactFor is where the caller is redirected for a placed call:
// sip:TOKEN@<the answering centre's published SIP address>.
func (r callRouter) contactFor(placed switchboard.Placed) (string, error) {
	addr := r.ownSIP
	if placed.Centre != r.n.Centre() {
		c, ok := r.n.Roster().Centres[placed.Centre]
		if !ok || c.SIPAddr == "" {
			return "", fmt.Errorf("route call to %s: %w", placed.Centre, ErrNoCentreSIP)
		}
		addr = c.SIPAddr
	}
	if addr == "" {
		return "", fmt.Errorf("route call here: %w", ErrNoCentreSIP)
	}
	return "sip:" + placed.Token + "@" + addr, nil
}
