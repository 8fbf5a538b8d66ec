package api

// The volunteer console socket, GET /v1/console: a signed-in volunteer's
// offers, conversations and categorisations. The protocol (frames, error
// codes, closes) is in docs/api.md, "The console"; here the volunteer's
// frames are shape-checked and handed to the switchboard, which decides
// what they mean. A console is same-origin only, whatever AllowedOrigins
// says: a partner site may embed the chat, never a volunteer's desk.

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/helpmesh/helpmesh/switchboard"
)

// consoleFrame is what a volunteer may send.
type consoleFrame struct {
	Type     string   `json:"type"`
	Channel  string   `json:"channel,omitempty"`
	On       *bool    `json:"on,omitempty"`
	Contact  string   `json:"contact,omitempty"`
	ID       string   `json:"id,omitempty"`
	Text     string   `json:"text,omitempty"`
	Topics   []string `json:"topics,omitempty"`
	AgeGroup string   `json:"age_group,omitempty"`
	// Phone is a pointer: "" is a value (no phone), not a missing field.
	Phone *string `json:"phone,omitempty"`
	// SDP is the browser's WebRTC offer (answer_call).
	SDP string `json:"sdp,omitempty"`
	// Reason is why the volunteer asks for support (ask_support).
	Reason string `json:"reason,omitempty"`
	// A transfer's (switchboard/transfer.go): the centre ("" for the
	// volunteer's own), the language ("" for the contact's), warm or cold,
	// and the private handover note.
	Centre   string `json:"centre,omitempty"`
	Language string `json:"language,omitempty"`
	Warm     *bool  `json:"warm,omitempty"`
	Note     string `json:"note,omitempty"`
	// To is "supervisor": the transfer goes to the supervisor reading
	// along (switchboard/support.go).
	To string `json:"to,omitempty"`
}

// consoleFields lists the fields each console frame type takes; those
// marked true are required.
var consoleFields = map[string]map[string]bool{
	"available": {"channel": true, "on": true},
	"accept":    {"contact": true},
	"decline":   {"contact": true},
	"typing":    {"contact": true},
	"message":   {"contact": true, "id": true, "text": true},
	"end":       {"contact": true, "topics": false, "age_group": false},
	"phone":     {"phone": true},
	// The browser phone (softphone.go).
	"answer_call": {"contact": true, "sdp": true},
	"hang_up":     {"contact": true},
	// Asking for a supervisor (switchboard/support.go).
	"ask_support": {"contact": true, "reason": false},
	"end_support": {"contact": true},
	// Transfer (switchboard/transfer.go).
	"transfer": {"contact": true, "centre": false, "language": false, "warm": false, "note": false, "to": false},
	"leave":    {"contact": true},
	// "I'm ready" during a cool-down (switchboard/care.go).
	"ready": {},
}

// decodeConsoleFrame parses and shape-checks one console frame. What the
// values mean (a known contact, topic, channel) is the switchboard's to
// check.
func decodeConsoleFrame(b []byte) (consoleFrame, error) {
	var f consoleFrame
	if err := decodeFrame(b, &f); err != nil {
		return consoleFrame{}, err
	}
	// First: an oversized offer says so whatever else is wrong with it.
	if len(f.SDP) > MaxSDPBytes {
		return consoleFrame{}, badFrame("bad_sdp", "sdp: at most %d bytes", MaxSDPBytes)
	}
	if len(f.Note) > switchboard.MaxNoteBytes {
		return consoleFrame{}, badFrame("bad_note", "note: at most %d bytes", switchboard.MaxNoteBytes)
	}
	if f.Type == "" {
		return consoleFrame{}, badFrame("bad_frame", "the frame has no type")
	}
	fields, ok := consoleFields[f.Type]
	if !ok {
		return consoleFrame{}, badFrame("unknown_type", "unknown type %q (want available, phone, accept, decline, message, typing, end, transfer, leave, ask_support, end_support, answer_call, hang_up or ready)", clipText(f.Type))
	}
	present := map[string]bool{
		"channel": f.Channel != "", "on": f.On != nil, "contact": f.Contact != "", "id": f.ID != "",
		"text": f.Text != "", "topics": f.Topics != nil, "age_group": f.AgeGroup != "", "phone": f.Phone != nil,
		"sdp": f.SDP != "", "centre": f.Centre != "", "language": f.Language != "", "warm": f.Warm != nil, "note": f.Note != "",
		"reason": f.Reason != "", "to": f.To != "",
	}
	for _, name := range []string{"channel", "on", "contact", "id", "text", "topics", "age_group", "phone", "sdp", "centre", "language", "warm", "note", "reason", "to"} {
		required, allowed := fields[name]
		switch {
		case present[name] && !allowed:
			return consoleFrame{}, badFrame("bad_frame", "%s takes no %s", f.Type, name)
		case required && !present[name]:
			return consoleFrame{}, badFrame("bad_frame", "%s needs %s", f.Type, name)
		}
	}
	if f.Phone != nil && len(*f.Phone) > switchboard.MaxPhoneBytes {
		return consoleFrame{}, badFrame("bad_phone", "phone: at most %d bytes", switchboard.MaxPhoneBytes)
	}
	if f.Type == "transfer" {
		if f.To != "" && f.To != "supervisor" || f.To != "" && f.Centre != "" {
			return consoleFrame{}, badFrame("bad_frame", "transfer: to is \"supervisor\" (the one reading along, at their centre: no centre), or left out")
		}
		if err := switchboard.CheckTransferRequest(f.transferRequest()); err != nil {
			return consoleFrame{}, badFrame("bad_request", "%s", err.Error())
		}
	}
	return f, nil
}

// transferRequest is a transfer frame's request.
func (f consoleFrame) transferRequest() switchboard.TransferRequest {
	return switchboard.TransferRequest{Centre: f.Centre, Language: f.Language, Warm: f.Warm != nil && *f.Warm, Note: f.Note,
		ToSupervisor: f.To == "supervisor"}
}

// Console frames beyond the shared ones.
type (
	// supportFrame tells the volunteer how their support request goes:
	// state asked (ringing at centre, "" ours), coming (supervisor took
	// it and reads along), unavailable, or over (reason says why).
	supportFrame struct {
		Type       string `json:"type"`
		Contact    string `json:"contact"`
		State      string `json:"state"`
		Supervisor string `json:"supervisor,omitempty"`
		Centre     string `json:"centre,omitempty"`
		Reason     string `json:"reason,omitempty"`
	}
	whisperFrame struct {
		Type       string `json:"type"`
		Contact    string `json:"contact"`
		ID         string `json:"id"`
		Text       string `json:"text"`
		Supervisor string `json:"supervisor"`
	}
	policyFrame struct {
		Type      string   `json:"type"`
		Topics    []string `json:"topics"`
		AgeGroups []string `json:"age_groups"`
		// Where a conversation may be transferred: the other centres of
		// the roster and the federation's languages.
		Centres   []transferCentre `json:"centres,omitempty"`
		Languages []string         `json:"languages,omitempty"`
	}
	transferCentre struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	availabilityFrame struct {
		Type     string          `json:"type"`
		Channels map[string]bool `json:"channels"`
		Active   int             `json:"active"`
		Capacity int             `json:"capacity"`
		// Phone is where this volunteer's calls ring (a SIP URI; "" for
		// none), so the page shows the phone in use.
		Phone string `json:"phone"`
	}
	offerFrame struct {
		Type        string `json:"type"`
		Contact     string `json:"contact"`
		Channel     string `json:"channel"`
		Language    string `json:"language"`
		FromCentre  string `json:"from_centre,omitempty"`
		RingSeconds int    `json:"ring_seconds"`
		// Transfer: a colleague hands the conversation over, with their
		// private Note (never shown to the visitor).
		Transfer bool   `json:"transfer,omitempty"`
		Note     string `json:"note,omitempty"`
		// Urgent: the visitor or caller said they need someone right now
		// (switchboard/urgent.go); the console marks the offer.
		Urgent bool `json:"urgent,omitempty"`
	}
	transferAcceptedFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact"`
		Alias   string `json:"alias"`
		Warm    bool   `json:"warm"`
	}
	transferFailedFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact"`
		Reason  string `json:"reason"`
	}
	withdrawnFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact"`
		Reason  string `json:"reason"`
	}
	// careFrame tells the volunteer why no offers come, or that their
	// shift ends soon (switchboard/care.go): state cool_down, break,
	// shift_over, shift_ending or ok; until is when it ends (RFC 3339,
	// the switchboard's own moment: it offers again then), absent when
	// it has no set end; in_a_row and minutes are for the words.
	careFrame struct {
		Type    string `json:"type"`
		State   string `json:"state"`
		Until   string `json:"until,omitempty"`
		InARow  int    `json:"in_a_row,omitempty"`
		Minutes int    `json:"minutes,omitempty"`
	}
	consoleConnectedFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact"`
		// Channel is the offer's ("phone": an in-call card, no messages).
		Channel    string `json:"channel,omitempty"`
		FromCentre string `json:"from_centre,omitempty"`
	}
)

// maxRinging bounds the offers a console remembers the channel of; one
// rings at a time, so this is never reached in practice.
const maxRinging = 64

// consoleConn is one volunteer's console socket: their
// switchboard.ConsoleSink.
type consoleConn struct {
	ws         *wsock
	refusals   *refusals
	volunteer  string
	sessionKey string
	console    *switchboard.Console
	channels   []string // the volunteer's roster channels

	mu      sync.Mutex
	live    map[string]bool   // conversations open on this console
	ringing map[string]string // channel of each offer not yet connected or withdrawn
	board   *switchboard.Console

	// The browser phone (softphone.go); softphones is nil at a centre
	// without one. calls is cancelled when the socket closes.
	softphones   Softphones
	calls        context.Context
	stopCalls    context.CancelFunc
	answers      sync.WaitGroup
	answering    string             // the contact an answer is in flight for, under mu
	cancelAnswer context.CancelFunc // stops that answer, under mu
	browserCall  string             // the call this page answered, under mu
	// supportAsks paces asking for support: each request rings
	// supervisors, possibly at other centres.
	supportAsks *rate.Limiter
}

// Support requests a console may make: a few at once, then one every
// supportAskEvery. A volunteer asks a handful of times a shift; a console
// asking and ending in a loop would ring supervisors across the country.
const (
	supportAskBurst = 3
	supportAskEvery = 30 * time.Second
)

func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	vol, ok := s.localVolunteer(sess.volunteer)
	if !ok {
		// The session is not ended: just after a restart the roster may
		// not have caught up yet, and a session ended now would stay dead.
		// Removal at this centre ends it (forgetVolunteer); elsewhere it
		// opens nothing while the volunteer is not this centre's.
		writeError(w, http.StatusUnauthorized, "unauthorized", "you are no longer a volunteer of this centre")
		return
	}
	sb, ok := s.desk(w, "the centre's switchboard is not running yet")
	if !ok {
		return
	}
	ws, ok := s.acceptSocket(w, r, whoVolunteer, &websocket.AcceptOptions{})
	if !ok {
		return
	}
	defer ws.finish()
	c := &consoleConn{ws: ws, refusals: s.refusals, volunteer: vol.ID, sessionKey: sess.key, channels: slices.Clone(vol.Channels),
		live: map[string]bool{}, ringing: map[string]string{}, softphones: s.cfg.Softphones,
		supportAsks: rate.NewLimiter(rate.Every(supportAskEvery), supportAskBurst)}
	c.calls, c.stopCalls = context.WithCancel(context.Background())
	defer c.stopCalls()
	ws.send(s.consolePolicyFrame())
	if s.cfg.Softphones != nil {
		ws.send(s.softphoneHello())
	}

	s.sockMu.Lock()
	if old := s.consoles[vol.ID]; old != nil {
		old.ws.sendThenClose(closedFrame{Type: "closed", Reason: "signed in elsewhere"}, websocket.StatusPolicyViolation, "signed in elsewhere")
	}
	s.consoles[vol.ID] = c
	s.sockMu.Unlock()
	defer func() {
		s.sockMu.Lock()
		if s.consoles[vol.ID] == c {
			delete(s.consoles, vol.ID)
		}
		s.sockMu.Unlock()
	}()

	console, err := sb.SignIn(switchboard.Volunteer{
		ID: vol.ID, Alias: vol.Alias, Channels: slices.Clone(vol.Channels),
		Languages: slices.Clone(vol.Languages), Capacity: vol.Capacity,
	}, c)
	if err != nil {
		ws.refuseErr(err, "the console could not open")
		return
	}
	c.console = console
	// The sink's Availability runs on the switchboard's goroutine and may
	// already be running: it reads the console under c.mu.
	c.mu.Lock()
	c.board = console
	c.mu.Unlock()
	ws.run(c.handle)
	c.closeSoftphone()
	console.SignOut()
}

// closeConsole closes volunteer's console (and supervisor consoles), if
// sessionKey is empty or the console was opened with that session.
func (s *Server) closeConsole(volunteer, sessionKey, reason string) {
	s.sockMu.Lock()
	defer s.sockMu.Unlock()
	s.closeSupervisorConsolesLocked(volunteer, sessionKey, reason)
	c := s.consoles[volunteer]
	if c == nil || sessionKey != "" && c.sessionKey != sessionKey {
		return
	}
	c.ws.sendThenClose(closedFrame{Type: "closed", Reason: reason}, websocket.StatusPolicyViolation, reason)
}

func (c *consoleConn) handle(typ websocket.MessageType, b []byte) {
	f, ok := readFrame(c.ws, typ, b, decodeConsoleFrame)
	if !ok {
		return
	}
	cs := c.console
	var err error
	switch f.Type {
	case "available":
		if f.Channel == switchboard.ChannelPhone && *f.On && cs.Phone() == "" {
			// Switched on without a phone, calls would never come and
			// nothing would say why.
			err = badFrame("no_phone", `calls ring on your own phone: give it first ({"type":"phone","phone":"<extension or sip:user@host>"})`)
		} else {
			err = cs.SetAvailable(f.Channel, *f.On)
		}
	case "phone":
		if strings.TrimSpace(*f.Phone) == PhoneBrowser && c.softphones == nil {
			err = errNoSoftphone
		} else {
			err = c.setPhone(*f.Phone)
		}
	case "answer_call":
		err = c.answerCall(f.Contact, f.SDP)
	case "hang_up":
		err = c.hangUp(f.Contact)
	case "ask_support":
		if ok, wait := take(c.supportAsks); !ok {
			c.ws.send(errorFrame{Type: "error", Code: "slow_down", Error: "asking for support: too many requests; try again shortly",
				Contact: clipText(f.Contact), RetryAfterSeconds: retryAfterSeconds(wait)})
			return
		}
		err = cs.AskSupport(f.Contact, f.Reason)
	case "end_support":
		err = cs.EndSupport(f.Contact)
	case "transfer":
		err = cs.Transfer(f.Contact, f.transferRequest())
	case "leave":
		err = cs.Leave(f.Contact)
	case "ready":
		err = cs.Ready()
	case "accept":
		err = cs.Accept(f.Contact)
	case "decline":
		err = cs.Decline(f.Contact)
	case "message":
		err = cs.Send(f.Contact, f.ID, f.Text)
	case "typing":
		if c.isLive(f.Contact) {
			_ = cs.Typing(f.Contact) // a race with the end is harmless
		}
	case "end":
		// Held across End: ending a live call posts its "ended" to the
		// sink at once, and Event must find the call no longer live, as a
		// conversation the volunteer ends gets no "ended", only
		// "categorised". No sink method runs under the switchboard's
		// lock, so this cannot deadlock.
		c.mu.Lock()
		err = cs.End(f.Contact, switchboard.Categorisation{Topics: f.Topics, AgeGroup: f.AgeGroup})
		if err == nil {
			delete(c.live, f.Contact)
			c.callOver(f.Contact)
			c.ws.send(contactFrame{Type: "categorised", Contact: f.Contact})
		}
		c.mu.Unlock()
	}
	var slow *switchboard.SlowDownError
	if errors.As(err, &slow) {
		c.refusals.count(whoVolunteer, refusedSlowDown)
		c.ws.send(errorFrame{Type: "error", Code: "slow_down", Error: err.Error(), Contact: clipText(f.Contact), ID: clipText(f.ID), RetryAfterSeconds: retryAfterSeconds(slow.RetryAfter)})
		return
	}
	if err != nil {
		c.ws.send(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error(), Contact: clipText(f.Contact), ID: clipText(f.ID)})
		if errorCode(err) == "not_signed_in" {
			c.ws.sendThenClose(closedFrame{Type: "closed", Reason: "signed in elsewhere"}, websocket.StatusPolicyViolation, "signed in elsewhere")
		}
	}
}

// setPhone sets where the volunteer's calls ring. Clearing it also
// switches phone off, so the switch shows what is true: no calls.
func (c *consoleConn) setPhone(phone string) error {
	if strings.TrimSpace(phone) == "" && slices.Contains(c.channels, switchboard.ChannelPhone) {
		if err := c.console.SetAvailable(switchboard.ChannelPhone, false); err != nil {
			return err
		}
	}
	err := c.console.SetPhone(phone)
	if errors.Is(err, switchboard.ErrBadRequest) {
		return &frameError{code: "bad_phone", msg: err.Error()}
	}
	return err
}

func (c *consoleConn) isLive(contact string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live[contact]
}

// The switchboard.ConsoleSink methods: called in order from the
// volunteer's outbox goroutine; they only queue frames.

func (c *consoleConn) Offer(o switchboard.Offer) {
	ring := max(int(math.Ceil(time.Until(o.Until).Seconds())), 0)
	c.mu.Lock()
	if len(c.ringing) >= maxRinging {
		clear(c.ringing) // only a bound: offers end in Connected or OfferWithdrawn
	}
	c.ringing[o.Contact] = o.Channel
	c.mu.Unlock()
	c.ws.send(offerFrame{Type: "offer", Contact: o.Contact, Channel: o.Channel, Language: o.Language, FromCentre: o.From, RingSeconds: ring,
		Transfer: o.Transfer, Note: o.Note, Urgent: o.Urgent})
}

func (c *consoleConn) OfferWithdrawn(contact, reason string) {
	c.mu.Lock()
	delete(c.ringing, contact)
	c.callOver(contact)
	c.mu.Unlock()
	c.ws.send(withdrawnFrame{Type: "offer_withdrawn", Contact: contact, Reason: reason})
}

func (c *consoleConn) Connected(contact, fromCentre string) {
	c.mu.Lock()
	c.live[contact] = true
	channel := c.ringing[contact]
	delete(c.ringing, contact)
	c.mu.Unlock()
	c.ws.send(consoleConnectedFrame{Type: "connected", Contact: contact, Channel: channel, FromCentre: fromCentre})
}

// Event passes on what the visitor's side said. A message, typing or end
// for a conversation no longer open on this console (ended here, or an echo
// of an end) is dropped; a late "delivered" still goes through.
func (c *consoleConn) Event(contact string, e switchboard.Event) {
	c.mu.Lock()
	live := c.live[contact]
	if live && e.Kind == switchboard.EventEnded {
		delete(c.live, contact)
		c.callOver(contact)
	}
	c.mu.Unlock()
	if !live && e.Kind != switchboard.EventDelivered {
		return
	}
	switch e.Kind {
	case switchboard.EventMessage:
		c.ws.send(messageFrame{Type: "message", Contact: contact, ID: e.ID, Text: e.Text})
	case switchboard.EventTyping:
		c.ws.sendLossy(contactFrame{Type: "typing", Contact: contact})
	case switchboard.EventDelivered:
		c.ws.send(idFrame{Type: "delivered", Contact: contact, ID: e.ID})
	case switchboard.EventEnded:
		by := e.By
		if by == "" {
			by = switchboard.ByVisitor
		}
		c.ws.send(endedFrame{Type: "ended", Contact: contact, By: by})
	case switchboard.EventSupport:
		c.ws.send(supportFrame{Type: "support", Contact: contact, State: e.By, Supervisor: e.Alias, Centre: e.Centre, Reason: e.Text})
	case switchboard.EventWhisper:
		// Only ever here: a supervisor's note is the volunteer's alone.
		c.ws.send(whisperFrame{Type: "whisper", Contact: contact, ID: e.ID, Text: e.Text, Supervisor: e.Alias})
	case switchboard.EventTransferAccepted:
		c.ws.send(transferAcceptedFrame{Type: "transfer_accepted", Contact: contact, Alias: e.Alias, Warm: e.Warm})
	case switchboard.EventTransferFailed:
		c.ws.send(transferFailedFrame{Type: "transfer_failed", Contact: contact, Reason: e.Reason})
	case switchboard.EventReconnecting, switchboard.EventResumed:
		// The visitor's centre was lost and the conversation is held for
		// them, or they are back (switchboard/resume.go).
		c.ws.send(contactFrame{Type: string(e.Kind), Contact: contact})
	}
}

func (c *consoleConn) Lost(contact string, undelivered int) {
	c.mu.Lock()
	delete(c.live, contact)
	c.callOver(contact)
	c.mu.Unlock()
	c.ws.send(undeliveredFrame{Type: "lost", Contact: contact, Undelivered: undelivered})
}

// Care tells the console why no offers come (switchboard.CareSink).
func (c *consoleConn) Care(n switchboard.CareNotice) {
	f := careFrame{Type: "care", State: n.State, InARow: n.InARow, Minutes: n.Minutes}
	if !n.Until.IsZero() {
		f.Until = n.Until.UTC().Format(time.RFC3339Nano)
	}
	c.ws.send(f)
}

var _ switchboard.CareSink = (*consoleConn)(nil)

// Availability also carries the phone in use, read now: the last frame
// after a change of phone always shows the new one.
func (c *consoleConn) Availability(channels map[string]bool, active, capacity int) {
	c.mu.Lock()
	board := c.board
	c.mu.Unlock()
	phone := ""
	if board != nil {
		phone = board.Phone()
	}
	c.ws.send(availabilityFrame{Type: "availability", Channels: channels, Active: active, Capacity: capacity, Phone: phone})
}

// consolePolicyFrame is the console's first frame: what a categorisation
// takes, and where a conversation may be transferred.
func (s *Server) consolePolicyFrame() policyFrame {
	r := s.cfg.Centre.Roster()
	self := s.cfg.Centre.Centre()
	f := policyFrame{Type: "policy", Topics: r.Policy.Topics, AgeGroups: switchboard.AgeGroups, Languages: r.Policy.Languages}
	for id, c := range r.Centres {
		if id != self {
			f.Centres = append(f.Centres, transferCentre{ID: id, Name: c.Name})
		}
	}
	slices.SortFunc(f.Centres, func(a, b transferCentre) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	return f
}
