package api

// The supervisor console socket, GET /v1/supervisor: a supervisor or
// coordinator of this centre, logged in with their own session, goes on
// and off duty and watches a read-only snapshot of the desk (the contacts
// waiting, the volunteers signed in) with the federation's count of
// supervisors on duty per centre. The protocol is in docs/api.md, "The
// supervisor console". The desk holds no visitor's words or address, and
// the federation learns only how many are on duty, never who. On duty,
// the console rings with volunteers' support requests (here, and from
// centres without a supervisor of their own); the supervisor who takes one
// reads the conversation along from then on and may whisper to the
// volunteer (switchboard/support.go). What they read is never stored.

import (
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/helpmesh/helpmesh/switchboard"
)

const (
	// deskEvery is how often a supervisor console gets the desk without a
	// change (the waiting times grow).
	deskEvery = 2 * time.Second
	// deskGap is the least time between two snapshots sent for changes:
	// a busy desk changes far more often than a person can read.
	deskGap = 250 * time.Millisecond
	// roleRecheckEvery: a demotion or removal closes an open supervisor
	// console within this.
	roleRecheckEvery = deskEvery
)

// supervisorFrame is what a supervisor console may send.
type supervisorFrame struct {
	Type string `json:"type"`
	On   *bool  `json:"on,omitempty"`
	// Support is a support request's id (take, whisper, leave).
	Support string `json:"support,omitempty"`
	ID      string `json:"id,omitempty"`
	Text    string `json:"text,omitempty"`
}

// decodeSupervisorFrame parses and shape-checks one supervisor frame.
func decodeSupervisorFrame(b []byte) (supervisorFrame, error) {
	var f supervisorFrame
	if err := decodeFrame(b, &f); err != nil {
		return supervisorFrame{}, err
	}
	switch f.Type {
	case "on_duty":
		if f.On == nil || f.Support != "" || f.ID != "" || f.Text != "" {
			return supervisorFrame{}, badFrame("bad_frame", "on_duty takes on (true or false) only")
		}
	case "take", "leave":
		if f.Support == "" || f.On != nil || f.ID != "" || f.Text != "" {
			return supervisorFrame{}, badFrame("bad_frame", "%s takes support (the request's id) only", f.Type)
		}
	case "whisper":
		if f.Support == "" || f.ID == "" || f.Text == "" || f.On != nil {
			return supervisorFrame{}, badFrame("bad_frame", "whisper needs support, id and text")
		}
	case "":
		return supervisorFrame{}, badFrame("bad_frame", "the frame has no type")
	default:
		return supervisorFrame{}, badFrame("unknown_type", "unknown type %q (want on_duty, take, whisper or leave)", clipText(f.Type))
	}
	if len(f.Support) > 64 || len(f.ID) > switchboard.MaxMessageIDBytes || len(f.Text) > switchboard.MaxWhisperBytes {
		return supervisorFrame{}, badFrame("bad_frame", "support id, id or text too long (text: at most %d bytes)", switchboard.MaxWhisperBytes)
	}
	return f, nil
}

// The desk frame: what a supervisor sees. Counts, channels, languages,
// aliases and durations only.
type (
	deskFrame struct {
		Type   string `json:"type"`
		Centre string `json:"centre"`
		// OnDuty: this console's supervisor is on duty from this console.
		OnDuty            bool                  `json:"on_duty"`
		SupervisorsOnDuty int                   `json:"supervisors_on_duty"`
		Waiting           []deskWaiting         `json:"waiting"`
		Volunteers        []deskVolunteer       `json:"volunteers"`
		Federation        []deskFederationEntry `json:"federation"`
	}
	deskWaiting struct {
		Channel       string `json:"channel"`
		Language      string `json:"language"`
		WaitedSeconds int    `json:"waited_seconds"`
		Ringing       bool   `json:"ringing"`
	}
	deskVolunteer struct {
		Alias           string             `json:"alias"`
		Available       []string           `json:"available"`
		Ringing         bool               `json:"ringing"`
		Capacity        int                `json:"capacity"`
		SignedInSeconds int                `json:"signed_in_seconds"`
		Conversations   []deskConversation `json:"conversations"`
	}
	deskConversation struct {
		Channel       string `json:"channel"`
		FromCentre    string `json:"from_centre,omitempty"`
		LastedSeconds int    `json:"lasted_seconds"`
		// Support: "asked" (the volunteer asked for support, it rings) or
		// "coming" (a supervisor reads along); left out when neither.
		Support string `json:"support,omitempty"`
	}
	deskFederationEntry struct {
		Centre string `json:"centre"`
		Name   string `json:"name"`
		// SupervisorsOnDuty is null when the centre's gossip is not alive
		// or it has published nothing yet: not known, which is not 0.
		SupervisorsOnDuty *int `json:"supervisors_on_duty"`
	}
)

// supervisorConn is one supervisor console.
type supervisorConn struct {
	s          *Server
	ws         *wsock
	sb         *switchboard.Switchboard
	supervisor string // the roster id
	role       string
	sessionKey string

	mu      sync.Mutex
	duty    *switchboard.Duty // nil while off duty
	changes *rate.Limiter     // the duty changes the supervisor may ask for
	notes   *rate.Limiter     // the whispers they may send
}

// Supervisor console frames for support (docs/api.md, "The supervisor
// console"): what rings, what is read along, and ends.
type (
	supportAskedFrame struct {
		Type      string `json:"type"`
		Support   string `json:"support"`
		Reason    string `json:"reason"`
		Channel   string `json:"channel"`
		Language  string `json:"language"`
		Volunteer string `json:"volunteer"`
		// Centre is the volunteer's centre when it is another.
		Centre string `json:"centre,omitempty"`
	}
	supportEndFrame struct {
		Type    string `json:"type"`
		Support string `json:"support"`
		Reason  string `json:"reason"`
	}
	readAlongFrame struct {
		Type    string `json:"type"`
		Support string `json:"support"`
		// Kind: message (By: visitor or volunteer), delivered (a whisper
		// reached the volunteer), or ended.
		Kind string `json:"kind"`
		ID   string `json:"id,omitempty"`
		Text string `json:"text,omitempty"`
		By   string `json:"by,omitempty"`
	}
)

// The supervisor console is the switchboard's DutySink.

func (c *supervisorConn) SupportAsked(a switchboard.SupportAlert) {
	c.ws.send(supportAskedFrame{Type: "support_asked", Support: a.ID, Reason: a.Reason, Channel: a.Channel, Language: a.Language, Volunteer: a.Volunteer, Centre: a.Centre})
}

func (c *supervisorConn) SupportTaken(a switchboard.SupportAlert) {
	c.ws.send(supportAskedFrame{Type: "support_taken", Support: a.ID, Reason: a.Reason, Channel: a.Channel, Language: a.Language, Volunteer: a.Volunteer, Centre: a.Centre})
}

func (c *supervisorConn) SupportWithdrawn(id, reason string) {
	c.ws.send(supportEndFrame{Type: "support_withdrawn", Support: id, Reason: reason})
}

func (c *supervisorConn) ReadAlong(id string, e switchboard.Event) {
	c.ws.send(readAlongFrame{Type: "read", Support: id, Kind: string(e.Kind), ID: e.ID, Text: e.Text, By: e.By})
}

func (c *supervisorConn) SupportEnded(id, reason string) {
	c.ws.send(supportEndFrame{Type: "support_ended", Support: id, Reason: reason})
}

// Whispers a console may send: far more than a person writes, far fewer
// than a script would.
const (
	whisperBurst = 10
	whisperEvery = 500 * time.Millisecond
)

func (s *Server) supervisorConsole(w http.ResponseWriter, r *http.Request) {
	who, ok := s.staffActor(w, r, []byte(s.cfg.AdminToken))
	if !ok {
		return
	}
	if who.id == adminActor {
		s.refusals.count(whoStaff, refusedForbidden)
		writeError(w, http.StatusForbidden, "forbidden", "a person goes on duty: log in as a supervisor or coordinator (the admin token is no one)")
		return
	}
	if !roleHas(who.role, rightSupervise) {
		s.refusals.count(whoStaff, refusedForbidden)
		writeError(w, http.StatusForbidden, "forbidden", rightSupervise.needs())
		return
	}
	sess, ok := s.sessionFrom(r)
	if !ok { // staffActor found it a moment ago; it may have just ended
		writeError(w, http.StatusUnauthorized, "unauthorized", "log in first: POST /v1/volunteer/login")
		return
	}
	sb, ok := s.desk(w, "the centre's switchboard is not running yet")
	if !ok {
		return
	}
	// Same-origin only (no OriginPatterns), like the volunteer console.
	ws, ok := s.acceptSocket(w, r, whoVolunteer, &websocket.AcceptOptions{})
	if !ok {
		return
	}
	defer ws.finish()
	c := &supervisorConn{s: s, ws: ws, sb: sb, supervisor: who.id, role: who.role, sessionKey: sess.key,
		changes: rate.NewLimiter(rate.Every(dutyChangeEvery), dutyChangeBurst),
		notes:   rate.NewLimiter(rate.Every(whisperEvery), whisperBurst)}

	s.sockMu.Lock()
	if s.supervisorConns == nil {
		s.supervisorConns = map[*supervisorConn]struct{}{}
	}
	s.supervisorConns[c] = struct{}{}
	s.sockMu.Unlock()
	defer func() {
		s.sockMu.Lock()
		delete(s.supervisorConns, c)
		s.sockMu.Unlock()
	}()
	if !c.stillSupervisor() {
		// A logout between the check and the registration above closed
		// the consoles it could see, not this one.
		ws.refuse(closedFrame{Type: "closed", Reason: "logged out"}, websocket.StatusPolicyViolation, "logged out")
		return
	}

	ws.send(c.desk())
	done := make(chan struct{})
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		c.push(done)
	}()
	ws.run(c.handle)
	close(done)
	<-pushed
	c.setDuty(false, "socket_closed")
}

// push sends the desk every deskEvery and after each change, and closes
// the console of someone no longer a supervisor here.
func (c *supervisorConn) push(done <-chan struct{}) {
	changes, stop := c.sb.Changes()
	defer stop()
	tick := time.NewTicker(deskEvery)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if !c.stillSupervisor() {
				c.setDuty(false, "role_lost")
				c.ws.sendThenClose(closedFrame{Type: "closed", Reason: "no longer a supervisor of this centre"},
					websocket.StatusPolicyViolation, "no longer a supervisor of this centre")
				return
			}
		case <-changes:
		}
		c.ws.sendLossy(c.desk())
		select {
		case <-done:
			return
		case <-time.After(deskGap):
		}
	}
}

// stillSupervisor reads the role from the roster now, and whether the
// session the console opened with still lives (a session that expired or
// was pruned closes no console by itself).
func (c *supervisorConn) stillSupervisor() bool {
	v, ok := c.s.localVolunteer(c.supervisor)
	return ok && roleHas(v.Role, rightSupervise) && c.s.sessions.live(c.sessionKey)
}

func (c *supervisorConn) handle(typ websocket.MessageType, b []byte) {
	f, ok := readFrame(c.ws, typ, b, decodeSupervisorFrame)
	if !ok {
		return
	}
	if f.Type != "on_duty" {
		c.support(f)
		return
	}
	{
		if *f.On && !c.stillSupervisor() {
			c.ws.send(errorFrame{Type: "error", Code: "forbidden", Error: rightSupervise.needs()})
			return
		}
		if ok, wait := take(c.changes); !ok {
			// Each change is gossiped and audited: a script flipping it
			// would flood both (and push real actions out of the log).
			c.ws.send(errorFrame{Type: "error", Code: "slow_down", Error: "going on and off duty: too many changes; try again shortly", RetryAfterSeconds: retryAfterSeconds(wait)})
			return
		}
		if err := c.setDuty(*f.On, ""); err != nil {
			c.ws.send(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error()})
		}
	}
}

// support takes, whispers in or leaves a support request.
func (c *supervisorConn) support(f supervisorFrame) {
	c.mu.Lock()
	d := c.duty
	c.mu.Unlock()
	if d == nil || !d.OnDuty() {
		c.ws.send(errorFrame{Type: "error", Code: "off_duty", Error: "go on duty first: support requests ring for supervisors on duty"})
		return
	}
	var err error
	switch f.Type {
	case "take":
		if !c.stillSupervisor() {
			err = badFrame("forbidden", "%s", rightSupervise.needs())
			break
		}
		if err = d.TakeSupport(f.Support); err == nil {
			c.audit("supervisor.take_support", "")
		}
	case "leave":
		if err = d.LeaveSupport(f.Support); err == nil {
			c.audit("supervisor.leave_support", "")
		}
	case "whisper":
		if !c.notes.Allow() {
			c.ws.send(errorFrame{Type: "error", Code: "slow_down", Error: "whispers: too many too fast", ID: clipText(f.ID), RetryAfterSeconds: 1})
			return
		}
		err = d.Whisper(f.Support, f.ID, f.Text)
	}
	if err != nil {
		c.ws.send(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error(), ID: clipText(f.ID)})
	}
}

// Duty changes a console may ask for: a burst of dutyChangeBurst, then one
// every dutyChangeEvery (a person goes on and off duty a few times a
// shift; at this pace a script fills the audit log's 80,000 lines in days,
// not minutes).
const (
	dutyChangeBurst = 6
	dutyChangeEvery = 10 * time.Second
)

// setDuty goes on or off duty; why is the audit's target for an end that
// was not asked for ("" when the supervisor asked). Going on duty when on
// already changes nothing.
func (c *supervisorConn) setDuty(on bool, why string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case on && c.duty != nil && c.duty.OnDuty():
		return nil
	case on:
		alias := c.supervisor
		if v, ok := c.s.localVolunteer(c.supervisor); ok && v.Alias != "" {
			alias = v.Alias
		}
		d, err := c.sb.GoOnDuty(c.supervisor, alias, c)
		if err != nil {
			return err
		}
		c.duty = d
		c.audit("supervisor.on_duty", "")
	case c.duty != nil:
		held := c.duty.OnDuty()
		c.duty.OffDuty()
		c.duty = nil
		if held {
			c.audit("supervisor.off_duty", why)
		}
	}
	return nil
}

func (c *supervisorConn) audit(action, target string) {
	_ = c.s.audit.record(c.s.log, auditEntry{Actor: c.supervisor, Role: c.role, Action: action, Target: target, Status: http.StatusOK})
}

func (c *supervisorConn) onDuty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.duty != nil && c.duty.OnDuty()
}

// desk is the snapshot frame now.
func (c *supervisorConn) desk() deskFrame {
	v := c.sb.DeskView()
	own := c.s.cfg.Centre.Centre()
	f := deskFrame{Type: "desk", Centre: own, OnDuty: c.onDuty(), SupervisorsOnDuty: v.SupervisorsOnDuty,
		Waiting: make([]deskWaiting, 0, len(v.Waiting)), Volunteers: make([]deskVolunteer, 0, len(v.Volunteers)),
		Federation: []deskFederationEntry{}}
	for _, w := range v.Waiting {
		f.Waiting = append(f.Waiting, deskWaiting{Channel: w.Channel, Language: w.Language, WaitedSeconds: seconds(w.Waited), Ringing: w.Ringing})
	}
	for _, vol := range v.Volunteers {
		dv := deskVolunteer{Alias: vol.Alias, Available: vol.Available, Ringing: vol.Ringing, Capacity: vol.Capacity,
			SignedInSeconds: seconds(vol.SignedInFor), Conversations: make([]deskConversation, 0, len(vol.Conversations))}
		for _, cv := range vol.Conversations {
			dv.Conversations = append(dv.Conversations, deskConversation{Channel: cv.Channel, FromCentre: cv.Centre, LastedSeconds: seconds(cv.Lasted), Support: cv.Support})
		}
		f.Volunteers = append(f.Volunteers, dv)
	}
	for _, cv := range c.s.cfg.Centre.Federation().Centres {
		e := deskFederationEntry{Centre: cv.ID, Name: cv.Name}
		switch {
		case cv.ID == own:
			n := v.SupervisorsOnDuty
			e.SupervisorsOnDuty = &n
		case cv.Gossip == "alive" && cv.Availability != nil:
			n := cv.Availability.SupervisorsOnDuty
			e.SupervisorsOnDuty = &n
		}
		f.Federation = append(f.Federation, e)
	}
	return f
}

func seconds(d time.Duration) int { return int(d / time.Second) }

// closeSupervisorConsoles closes volunteer's supervisor consoles, those
// opened with sessionKey only if it is not empty (a logout, the end of
// their sessions). Under s.sockMu.
func (s *Server) closeSupervisorConsolesLocked(volunteer, sessionKey, reason string) {
	for c := range s.supervisorConns {
		if c.supervisor == volunteer && (sessionKey == "" || c.sessionKey == sessionKey) {
			c.ws.sendThenClose(closedFrame{Type: "closed", Reason: reason}, websocket.StatusPolicyViolation, reason)
		}
	}
}
