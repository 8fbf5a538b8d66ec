package api

// The browser phone (issue 13): at a centre without a PBX the volunteer
// answers calls in the console page over WebRTC. The node's side (SIP, the
// media bridge) is behind Softphones; here the console carries the SDP
// offer and answer, hangs up when asked and when the page goes away, and
// never blocks its read loop on the node. docs/api.md, "The browser
// phone", is the protocol.

import (
	"context"
	"errors"
	"time"

	"github.com/helpmesh/helpmesh/switchboard"
)

// Softphones is the node's browser phone: the volunteer's browser sends its
// WebRTC offer for the call ringing for them and gets the node's answer;
// the voice then flows between the browser and the node.
type Softphones interface {
	// ICEServers are the STUN/TURN servers the browser uses.
	ICEServers() []ICEServer
	// Answer hands the volunteer's browser SDP offer to the call ringing
	// for them and returns the node's SDP answer. It waits (bounded by
	// ctx) for the call to arrive if the volunteer answered its offer card
	// before the call reached the node. Its errors wrap ErrNoCall or
	// ErrBadSDP where those apply.
	Answer(ctx context.Context, volunteer, browserSDP string) (string, error)
	// HangUp ends the volunteer's browser call, if any (the node hangs up
	// the caller).
	HangUp(volunteer string)
}

// ICEServer is one STUN or TURN server, as the browser's RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Errors a Softphones implementation wraps, so the console can say what
// went wrong (error codes no_call and bad_sdp; anything else is
// call_failed).
var (
	// ErrNoCall: no call is ringing for this volunteer (none came within
	// the wait, or it ended or went elsewhere).
	ErrNoCall = errors.New("no call is ringing for you")
	// ErrBadSDP: the browser's offer cannot be used (unparseable, no
	// audio, no codec the node speaks, too large).
	ErrBadSDP = errors.New("the browser's call offer cannot be used")

	// errNoSoftphone refuses the browser phone's frames (and the phone
	// "browser") at a centre without one.
	errNoSoftphone = &frameError{code: "no_softphone", msg: "this centre has no browser phone: calls ring on a desk phone"}
)

const (
	// MaxSDPBytes bounds a browser offer. Chromium's audio-only offer with
	// every host candidate is 2-5 KiB; JSON escaping keeps 8 KiB well
	// inside a 16 KiB frame.
	MaxSDPBytes = 8 << 10
	// PhoneBrowser is the phone value that has calls ring in the
	// volunteer's console page.
	PhoneBrowser = switchboard.BrowserPhone
	// softphoneAnswerTimeout bounds Answer: the call's arrival and the
	// node's ICE gathering. The caller hears ringing meanwhile.
	softphoneAnswerTimeout = 15 * time.Second
)

// Console frames of the browser phone.
type (
	softphoneFrame struct {
		Type       string      `json:"type"`
		ICEServers []ICEServer `json:"ice_servers"`
		// AudioProcessing says whether the page asks the browser for echo
		// cancellation, noise suppression and gain control.
		AudioProcessing bool `json:"audio_processing"`
	}
	callMediaFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact"`
		SDP     string `json:"sdp"`
	}
)

// softphoneHello is the frame that tells the page it may answer calls
// itself.
func (s *Server) softphoneHello() softphoneFrame {
	ice := s.cfg.Softphones.ICEServers()
	if ice == nil {
		ice = []ICEServer{}
	}
	return softphoneFrame{Type: "softphone", ICEServers: ice, AudioProcessing: !s.cfg.SoftphoneRaw}
}

// softphoneErrorCode maps an Answer error to its error frame code.
func softphoneErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrBadSDP):
		return "bad_sdp"
	case errors.Is(err, ErrNoCall):
		return "no_call"
	default:
		return "call_failed"
	}
}

// softphoneErrorText is what the volunteer reads. A failure other than
// ours is not passed on: its text is the node's business (and could name
// a SIP peer).
func softphoneErrorText(code string, err error) string {
	switch code {
	case "bad_sdp", "no_call":
		return err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the call could not be connected in time"
	}
	return "the call could not be connected"
}

// answerCall starts the node's answer to the browser's offer for contact,
// in its own goroutine: Answer may wait for the call to arrive, and the
// console's read loop must go on meanwhile (a decline, another offer).
// One answer is in flight per console.
func (c *consoleConn) answerCall(contact, sdp string) error {
	if c.softphones == nil {
		return errNoSoftphone
	}
	if c.console.Phone() != PhoneBrowser {
		return badFrame("no_call", "your calls ring at %s, not in this browser", c.console.Phone())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ringing[contact] != switchboard.ChannelPhone {
		return badFrame("no_call", "no call %s is ringing for you", clipText(contact))
	}
	if c.answering != "" {
		return badFrame("busy", "the call %s is being answered already", clipText(c.answering))
	}
	ctx, cancel := context.WithTimeout(c.calls, softphoneAnswerTimeout)
	c.answering, c.cancelAnswer = contact, cancel
	c.answers.Add(1)
	go func() {
		defer c.answers.Done()
		defer cancel()
		answer, err := c.softphones.Answer(ctx, c.volunteer, sdp)
		c.mu.Lock()
		c.answering, c.cancelAnswer = "", nil
		if err == nil {
			c.browserCall = contact
		}
		c.mu.Unlock()
		if err != nil {
			code := softphoneErrorCode(err)
			c.ws.send(errorFrame{Type: "error", Code: code, Error: softphoneErrorText(code, err), Contact: clipText(contact)})
			return
		}
		c.ws.send(callMediaFrame{Type: "call_media", Contact: contact, SDP: answer})
	}()
	return nil
}

// hangUp ends the browser call for contact, or stops answering it.
func (c *consoleConn) hangUp(contact string) error {
	if c.softphones == nil {
		return errNoSoftphone
	}
	c.mu.Lock()
	ours := contact == c.browserCall || contact == c.answering
	if contact == c.answering && c.cancelAnswer != nil {
		c.cancelAnswer()
	}
	if contact == c.browserCall {
		c.browserCall = ""
	}
	c.mu.Unlock()
	if !ours {
		return badFrame("no_call", "no call %s in this browser", clipText(contact))
	}
	c.softphones.HangUp(c.volunteer)
	return nil
}

// callOver forgets contact as this console's browser call: it ended, was
// withdrawn or lost, so closing the page has nothing to hang up.
func (c *consoleConn) callOver(contact string) {
	if c.browserCall == contact {
		c.browserCall = ""
	}
}

// closeSoftphone runs when the console's socket has closed: an answer in
// flight is stopped, and a call this page answered is hung up, as the
// voice went with the page (the node releases the volunteer).
func (c *consoleConn) closeSoftphone() {
	if c.softphones == nil {
		return
	}
	c.mu.Lock()
	inFlight := c.answering != ""
	c.mu.Unlock()
	c.stopCalls()
	c.answers.Wait()
	c.mu.Lock()
	call := c.browserCall
	c.browserCall = ""
	c.mu.Unlock()
	if inFlight || call != "" {
		c.softphones.HangUp(c.volunteer)
	}
}
