// Package siptest holds real sipgo user agents for tests that need the
// far ends of a call in-process: a PBX on the caller's side and a
// volunteer's desk phone. They run on loopback addresses of their own, so a
// test can tell the node's allowlist (the PBX's prefix) from a phone's.
package siptest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
)

// End is a real sipgo UA on its own loopback address and port, with a
// server and a client that sends from the same socket.
type End struct {
	UA     *sipgo.UserAgent
	Srv    *sipgo.Server
	Client *sipgo.Client
	Addr   netip.AddrPort
	// Close stops serving and closes the UA; once, also at cleanup.
	Close func()
}

// NewEnd starts an End on ip (port 0). register adds the handlers before
// the UA serves (sipgo's handler map is not safe to change while serving).
func NewEnd(t testing.TB, ip string, register func(*End)) *End {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(ip),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(ip), sipgo.WithClientPort(int(addr.Port())),
		sipgo.WithClientConnectionAddr(addr.String()), sipgo.WithClientLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	e := &End{UA: ua, Srv: srv, Client: client, Addr: addr}
	register(e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeUDP(conn)
	}()
	e.Close = sync.OnceFunc(func() {
		_ = conn.Close()
		<-done
		ua.Close()
	})
	t.Cleanup(e.Close)
	// Ready once the client can send from the served socket (sipgo adds it
	// to its pool inside ServeUDP): an OPTIONS to itself gets an answer.
	fedtest.Eventually(t, 5*time.Second, "the UA serving", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: ip, Port: int(addr.Port())})
		_, err := client.Do(ctx, req)
		return err == nil
	})
	return e
}

// Contact is a Contact header for user at this End.
func (e *End) Contact(user string) sip.ContactHeader {
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: e.Addr.Addr().String(), Port: int(e.Addr.Port())}}
}

// Phone is a volunteer's desk phone: a sipgo UAS that answers each INVITE
// as told and records what reached it.
type Phone struct {
	*End
	Dialogs  *sipgo.DialogServerCache
	Invites  chan *sip.Request
	Acks     chan *sip.Request
	Byes     chan *sip.Request
	Infos    chan *sip.Request
	Cancels  chan struct{}
	Sessions chan *sipgo.DialogServerSession
	// PickUp, on a phone started with Held, holds the 200 after the 180
	// until it is closed (a 180 and a 200 sent together may pass each other:
	// sipgo handles each datagram in its own goroutine). NewPhone makes it
	// before the phone serves: set later, the handler's read of the field
	// races the test's write (the race detector sees no order through UDP).
	PickUp chan struct{}
}

// PhoneSDP is the phone's answer to the caller's media offer; it must
// reach the caller side unchanged (the node never touches the SDP).
const PhoneSDP = "v=0\r\no=vol 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"

// How a Phone answers an INVITE.
const (
	Answer = "200"  // ring, then pick up
	Busy   = "486"  // busy at once
	Ring   = "ring" // ring until cancelled
	Held   = "held" // ring, then pick up once PickUp is closed
)

// NewPhone starts a phone on 127.0.0.3 (outside a PBX prefix of
// 127.0.0.1/32) that answers as answer says.
func NewPhone(t testing.TB, answer string) *Phone {
	t.Helper()
	v := &Phone{
		Invites:  make(chan *sip.Request, 4),
		Acks:     make(chan *sip.Request, 4),
		Byes:     make(chan *sip.Request, 4),
		Infos:    make(chan *sip.Request, 4),
		Cancels:  make(chan struct{}, 4),
		Sessions: make(chan *sipgo.DialogServerSession, 4),
	}
	if answer == Held {
		v.PickUp = make(chan struct{})
	}
	v.End = NewEnd(t, "127.0.0.3", func(e *End) {
		v.Dialogs = sipgo.NewDialogServerCache(e.Client, e.Contact("vol"))
		e.Srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			v.Invites <- req
			if answer == Busy {
				_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil))
				return
			}
			d, err := v.Dialogs.ReadInvite(req, tx)
			if err != nil {
				t.Errorf("phone: read INVITE: %v", err)
				return
			}
			tx.OnCancel(func(*sip.Request) { v.Cancels <- struct{}{} })
			switch answer {
			case Answer, Held:
				_ = d.Respond(sip.StatusRinging, "Ringing", nil)
				if v.PickUp != nil {
					<-v.PickUp
				}
				ct := sip.ContentTypeHeader("application/sdp")
				_ = d.Respond(sip.StatusOK, "OK", []byte(PhoneSDP), &ct)
				v.Sessions <- d
			default:
				_ = d.Respond(sip.StatusRinging, "Ringing", nil)
				<-tx.Done()
			}
		})
		e.Srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = v.Dialogs.ReadAck(req, tx)
			v.Acks <- req
		})
		e.Srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			if err := v.Dialogs.ReadBye(req, tx); err != nil {
				t.Errorf("phone: BYE: %v", err)
			}
			v.Byes <- req
		})
		e.Srv.OnInfo(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
			v.Infos <- req
		})
	})
	return v
}

// URI is the phone's SIP URI, as a volunteer gives it.
func (v *Phone) URI() string { return fmt.Sprintf("sip:vol@%s", v.Addr) }

// CallerPBX is the caller's side: the PBX relaying a caller's INVITE to a
// node, a sipgo dialog UAC on 127.0.0.1.
type CallerPBX struct {
	*End
	Dialogs *sipgo.DialogClientCache
	Byes    chan *sip.Request
}

// The caller's identity in test calls: number and display name in From and
// Contact, and in the SDP; none may reach a log, a metric or a file.
const (
	CanaryNumber = "4790012345"
	CanaryName   = "Canary Zqxjkv"
	CallerSDP    = "v=0\r\no=4790012345 1 1 IN IP4 127.0.0.1\r\ns=Canary Zqxjkv\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n"
)

// NewCallerPBX starts the caller's PBX on 127.0.0.1.
func NewCallerPBX(t testing.TB) *CallerPBX {
	t.Helper()
	return NewCallerAt(t, "127.0.0.1")
}

// NewCallerAt starts a caller's side on ip: on 127.0.0.1 a node's PBX or
// trunk in the tests, elsewhere (127.0.0.3) a stranger.
func NewCallerAt(t testing.TB, ip string) *CallerPBX {
	t.Helper()
	c := &CallerPBX{Byes: make(chan *sip.Request, 4)}
	c.End = NewEnd(t, ip, func(e *End) {
		ct := e.Contact(CanaryNumber)
		ct.DisplayName = CanaryName
		c.Dialogs = sipgo.NewDialogClientCache(e.Client, ct)
		e.Srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			if err := c.Dialogs.ReadBye(req, tx); err != nil {
				t.Errorf("caller: BYE: %v", err)
			}
			c.Byes <- req
		})
	})
	return c
}

// Invite calls user (a queue or a token) at the node at addr with the
// caller's canary identity and SDP. The session's WaitAnswer gives the
// outcome.
func (c *CallerPBX) Invite(t testing.TB, node netip.AddrPort, user string) *sipgo.DialogClientSession {
	t.Helper()
	return c.InviteURI(t, sip.Uri{Scheme: "sip", User: user, Host: node.Addr().String(), Port: int(node.Port())})
}

// InviteWith is Invite with extra headers (e.g. Priority: emergency, a
// PBX's menu choice).
func (c *CallerPBX) InviteWith(t testing.TB, node netip.AddrPort, user string, headers ...sip.Header) *sipgo.DialogClientSession {
	t.Helper()
	return c.inviteSDP(t, sip.Uri{Scheme: "sip", User: user, Host: node.Addr().String(), Port: int(node.Port())}, CallerSDP, headers...)
}

// InviteURI is Invite to a whole URI (e.g. a 302's Contact).
func (c *CallerPBX) InviteURI(t testing.TB, to sip.Uri) *sipgo.DialogClientSession {
	t.Helper()
	return c.InviteSDP(t, to, CallerSDP)
}

// InviteSDP is InviteURI with another SDP offer (a malformed one, or one
// whose audio port the test listens on).
func (c *CallerPBX) InviteSDP(t testing.TB, to sip.Uri, sdp string) *sipgo.DialogClientSession {
	t.Helper()
	return c.inviteSDP(t, to, sdp)
}

func (c *CallerPBX) inviteSDP(t testing.TB, to sip.Uri, sdp string, headers ...sip.Header) *sipgo.DialogClientSession {
	t.Helper()
	from := &sip.FromHeader{DisplayName: CanaryName, Address: sip.Uri{Scheme: "sip", User: CanaryNumber, Host: c.Addr.Addr().String()}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	ct := sip.ContentTypeHeader("application/sdp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.Dialogs.Invite(ctx, to, []byte(sdp), append([]sip.Header{from, &ct}, headers...)...)
	if err != nil {
		t.Fatalf("INVITE: %v", err)
	}
	return d
}

// NeedSipp returns sipp's path, skipping the test without it, except in CI
// (CI=true), where .ci/run installs it (Debian's sip-tester).
func NeedSipp(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sipp not found; CI must install Debian's sip-tester (.ci/run does)")
		}
		t.Skip("sipp not installed (apt-get install sip-tester); skipping")
	}
	return path
}

// Receive takes one value from ch within 10 s.
func Receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

// FinalResponse is the final non-2xx answer a dialog's WaitAnswer ended
// with; it fails the test on anything else.
func FinalResponse(t testing.TB, err error) *sip.Response {
	t.Helper()
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) {
		t.Fatalf("want a final non-2xx answer, got %v", err)
	}
	return de.Res
}
