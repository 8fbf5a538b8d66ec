package overflow

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// level6Frame is the offer stream's frame as a release of roster level 6
// knew it: no urgent, transfer, note, transfers or support.
type level6Frame struct {
	Type       frameType          `json:"t"`
	Contact    string             `json:"contact,omitempty"`
	Channel    string             `json:"channel,omitempty"`
	Language   string             `json:"language,omitempty"`
	RingMillis int64              `json:"ring_ms,omitempty"`
	Alias      string             `json:"alias,omitempty"`
	Token      string             `json:"token,omitempty"`
	Resume     string             `json:"resume,omitempty"`
	Resumable  bool               `json:"resumable,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Seq        uint64             `json:"s,omitempty"`
	Ack        uint64             `json:"a,omitempty"`
	Event      *switchboard.Event `json:"e,omitempty"`
}

// During a rolling upgrade a level-6 centre decodes offers strictly and
// declines a frame with the level-7 fields as "malformed offer" (review
// finding): an urgent chat offered to it is offered again without them
// and accepted, so urgency never costs a contact its overflow; a transfer
// is not retried (it cannot be stripped) and stays a decline.
func TestOfferToALevel6CentreIsRetriedWithoutTheNewFields(t *testing.T) {
	ha, hb := testHost(t), testHost(t)
	ha.Peerstore().AddAddrs(hb.ID(), hb.Addrs(), time.Hour)
	dir := centres{"a": ha.ID(), "b": hb.ID()}
	ra := NewRouter(RouterConfig{Centre: "a", Host: ha, Directory: dir, Logger: testLogger()})
	defer ra.Close()
	got := make(chan level6Frame, 4)
	hb.SetStreamHandler(offerProtocol, func(s network.Stream) {
		var f level6Frame
		if err := wire.Read(s, &f, maxFrame); err != nil {
			_ = wire.Write(s, level6Frame{Type: frameDeclined, Reason: "malformed offer"}, maxFrame)
			_ = s.Close()
			return
		}
		got <- f
		_ = wire.Write(s, level6Frame{Type: frameAccepted, Alias: "Old Oda"}, maxFrame)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ans, err := ra.Offer(ctx, "b", switchboard.OutgoingOffer{Contact: "c0ffeec0ffeec0ffee", Channel: switchboard.ChannelChat, Language: "nb", Ring: time.Second, Urgent: true})
	if err != nil {
		t.Fatalf("urgent chat to a level-6 centre: %v", err)
	}
	if ans.Alias() != "Old Oda" {
		t.Fatalf("answer %q", ans.Alias())
	}
	ans.Cancel("test over")
	if f := <-got; f.Contact != "c0ffeec0ffeec0ffee" || f.Channel != switchboard.ChannelChat {
		t.Fatalf("the level-6 centre read %+v", f)
	}

	_, err = ra.Offer(ctx, "b", switchboard.OutgoingOffer{Contact: "c0ffeec0ffeec0ffee", Channel: switchboard.ChannelChat, Language: "nb", Ring: time.Second, Transfer: true, Note: "n"})
	if !errors.Is(err, switchboard.ErrDeclined) {
		t.Fatalf("a transfer to a level-6 centre: %v, want a decline", err)
	}
	select {
	case f := <-got:
		t.Fatalf("a transfer was retried stripped: %+v", f)
	default:
	}
}
