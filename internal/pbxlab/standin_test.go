package pbxlab_test

import (
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// answer is a stand-in node's reply to an INVITE for user: a status code
// and, for a 3xx, the Contact. Code 0: no reply at all (a dead node).
type answer func(user string) (code int, contact string)

// standIn is a stand-in for a centre's helpmesh node: a sipgo UAS that
// answers INVITEs by a rule the test sets (302 to a token at the other PBX,
// 302 to a volunteer's phone, 480, 404) and OPTIONS with 200. The real node
// proxies the token call instead; the Kamailio config handles both.
type standIn struct {
	addr string

	mu     sync.Mutex
	rule   answer
	users  []string // Request-URI users of the INVITEs, in order
	codes  []int
	closed bool
}

func startStandIn(t *testing.T) *standIn {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler) // sip.SIPDebug stays false: no messages in logs
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("helpmesh-standin"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)))
	if err != nil {
		t.Fatalf("stand-in node: %v", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatalf("stand-in node: %v", err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("stand-in node: %v", err)
	}
	n := &standIn{addr: conn.LocalAddr().String()}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		user := req.Recipient.User
		n.mu.Lock()
		rule := n.rule
		n.mu.Unlock()
		code, contact := 503, ""
		if rule != nil {
			code, contact = rule(user)
		}
		if code == 0 { // a dead node: not a word, not even 100 Trying
			n.mu.Lock()
			n.users = append(n.users, user)
			n.codes = append(n.codes, 0)
			n.mu.Unlock()
			return
		}
		res := sip.NewResponseFromRequest(req, code, reasons[code], nil)
		switch {
		case code >= 300 && code < 400:
			res.AppendHeader(sip.NewHeader("Contact", "<"+contact+">"))
		case code == 480:
			res.AppendHeader(sip.NewHeader("Retry-After", "10"))
		}
		_ = tx.Respond(res)
		n.mu.Lock()
		n.users = append(n.users, user)
		n.codes = append(n.codes, code)
		n.mu.Unlock()
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		srv.Close()
		ua.Close()
		conn.Close()
		<-served
	})
	return n
}

// URI is the node's address as a Kamailio NODE define wants it.
func (n *standIn) URI() string { return "sip:" + n.addr }

func (n *standIn) answer(rule answer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rule = rule
}

// asked is the Request-URI users of the INVITEs so far and the codes sent.
func (n *standIn) asked() ([]string, []int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.users...), append([]int(nil), n.codes...)
}

var reasons = map[int]string{
	302: "Moved Temporarily",
	404: "Not Found",
	480: "Temporarily Unavailable",
	503: "Service Unavailable",
}
