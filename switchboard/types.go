// Package switchboard is one centre's live desk: the contacts waiting at it,
// its signed-in volunteers, the offers ringing on their consoles, and the
// conversations in progress. It decides everything a centre alone may decide
// (DESIGN.md invariant 3): which of its volunteers is offered what, and which
// acceptance wins for a contact it owns. It does no networking: the overflow
// package carries its offers and conversations to other centres.
package switchboard

import (
	"errors"
	"time"

	"github.com/helpmesh/helpmesh/internal/channels"
)

var (
	// ErrUnknownContact means no contact with that id is known here.
	ErrUnknownContact = errors.New("unknown contact")
	// ErrOfferGone means the offer was withdrawn or already taken.
	ErrOfferGone = errors.New("offer no longer open")
	// ErrNotSignedIn means the volunteer has no console open here.
	ErrNotSignedIn = errors.New("volunteer not signed in")
	// ErrBadMessage means a message is empty, too long or not UTF-8.
	ErrBadMessage = errors.New("bad message")
	// ErrBadRequest means a channel, language, topic or age group is unknown.
	ErrBadRequest = errors.New("bad request")
	// ErrNoVolunteer means no volunteer is free for an incoming offer.
	ErrNoVolunteer = errors.New("no volunteer free")
	// ErrEnded means the conversation has ended.
	ErrEnded = errors.New("conversation ended")
	// ErrClosed means the switchboard has been closed.
	ErrClosed = errors.New("switchboard closed")
	// ErrDeclined is what an Overflow's Offer error wraps when the other
	// centre said no (as opposed to being unreachable): the KPIs tell the
	// two apart.
	ErrDeclined = errors.New("offer declined")
	// ErrDraining means the centre is finishing its conversations before a
	// restart and takes no new contact; the visitor should try again or
	// another centre.
	ErrDraining = errors.New("centre draining for a restart")
	// ErrSlowDown means a message came faster than the conversation's Pace
	// allows. It was not passed on; the sender may send it again later
	// (SlowDownError says when).
	ErrSlowDown = errors.New("slow down")
	// ErrFlooding means a visitor kept sending faster than the Pace after
	// being told to slow down: the contact has been ended.
	ErrFlooding = errors.New("flooding")
	// ErrQueueFull means the centre's queue for the channel is at
	// Config.MaxQueue: the visitor is told so honestly (with the policy's
	// emergency numbers) instead of being put at a place nobody reaches.
	ErrQueueFull = errors.New("queue full")
	// ErrResumeRefused means a page's resume secret opens no conversation
	// here: forged, used, expired, or the conversation has ended. The
	// reasons are not told apart, so a guess learns nothing.
	ErrResumeRefused = errors.New("the conversation cannot be continued here")
	// ErrCareHolds means a volunteer asked to take offers during a break
	// or after their shift: only a cool-down ends when they say they are
	// ready (care.go).
	ErrCareHolds = errors.New("a break or the end of a shift cannot be cut short")
)

// Limits on what a visitor or volunteer may send.
const (
	MaxTextBytes      = 4000
	MaxMessageIDBytes = 64
)

// Channels a contact can come on.
const (
	ChannelChat  = channels.Chat
	ChannelPhone = channels.Phone
)

// Who ended a conversation, or why it ended.
const (
	ByVisitor   = "visitor"
	ByVolunteer = "volunteer"
	// ByCaller: a phone caller hung up (before pick-up: abandoned).
	ByCaller = "caller"
	// ByUnanswered: a reserved phone did not pick up (refused, rang out, or
	// the call never arrived): the call went back to its PBX's queue.
	ByUnanswered = "unanswered"
	// ByResumed: the visitor's page went on with the conversation at the
	// answering centre directly; the owner's side ends as answered.
	ByResumed = "resumed"
	// ByTransferred: the volunteer handed the conversation over to
	// another volunteer (transfer.go); they do not categorise it.
	ByTransferred = "transferred"
)

// AgeGroups a volunteer may record at the end of a contact.
var AgeGroups = []string{"unknown", "under-13", "13-15", "16-18", "19-24", "25-plus"}

// State is where a contact is in its life.
type State string

// The contact states.
const (
	StateQueued    State = "queued"
	StateOffered   State = "offered"
	StateConnected State = "connected"
	StateEnded     State = "ended"
	StateAbandoned State = "abandoned"
	// StateReturned is a phone call handed back to its phone system's own
	// queue: the reserved volunteer did not pick up, the call never arrived,
	// or the answering centre was lost before pick-up. The caller is not
	// lost (the PBX keeps them), but helpmesh did not answer them.
	StateReturned State = "returned"
)

// Categorisation is the only record a contact leaves: no free text.
type Categorisation struct {
	Topics   []string `json:"topics"`
	AgeGroup string   `json:"age_group"`
}

// EventKind names what travels between the two ends of a conversation.
type EventKind string

// The event kinds.
const (
	EventMessage   EventKind = "message"
	EventTyping    EventKind = "typing"
	EventDelivered EventKind = "delivered"
	EventEnded     EventKind = "ended"
	// EventAnswered says a reserved phone volunteer picked up a call
	// (phone only, from the answering centre to the call's owner).
	EventAnswered EventKind = "answered"
	// EventReconnecting and EventResumed tell a volunteer's console that
	// the visitor's centre was lost and the conversation is held, and
	// that the visitor is back (resume.go). EventMove tells a visitor's
	// page to resume at the answering centre now: ours is draining. The
	// three stay within a centre; they never travel on a relay.
	EventReconnecting EventKind = "reconnecting"
	EventResumed      EventKind = "resumed"
	EventMove         EventKind = "move"
	// EventStayed answers a page's stay when the conversation is still
	// relayed (a drain's move): it goes on here.
	EventStayed EventKind = "stayed"
	// EventSupport tells a volunteer's console how their support request
	// goes (By: SupportAsked, SupportComing, SupportUnavailable,
	// SupportOver); it stays within their centre. EventWhisper is a
	// supervisor's note to the volunteer: it never reaches a visitor
	// (support.go). EventSupervised tells the visitor's page, per the
	// policy, that a supervisor reads along: it travels on the relay from
	// the volunteer's centre to the visitor's.
	EventSupport    EventKind = "support"
	EventWhisper    EventKind = "whisper"
	EventSupervised EventKind = "supervised"
	// Transfer (transfer.go). EventTransfer and EventLeave travel from
	// the answering centre to the contact's owner: its volunteer asks for
	// a transfer, or leaves a warm one. EventTransferAccepted and
	// EventTransferFailed travel from the owner to the asking volunteer.
	EventTransfer         EventKind = "transfer"
	EventLeave            EventKind = "leave"
	EventTransferAccepted EventKind = "transfer_accepted"
	EventTransferFailed   EventKind = "transfer_failed"
)

// Event is one thing one end of a conversation tells the other.
type Event struct {
	Kind EventKind `json:"kind"`
	// ID is the sender's id of a message (echoed in Delivered).
	ID   string `json:"id,omitempty"`
	Text string `json:"text,omitempty"`
	// By says who ended the conversation (or, on a supervisor's seat, who
	// said a message; of an EventSupport, how the request goes).
	By string `json:"by,omitempty"`
	// Alias is also a supervisor's, on support events and whispers, and
	// Centre the supervisor's centre ("" the volunteer's own).
	// A transfer's fields (transfer.go): the centre and language asked
	// for, warm or cold, the private handover note (to the new volunteer
	// only), the new volunteer's alias (also on a volunteer's message to
	// the visitor while two volunteers are in the conversation), and why
	// a transfer failed. Older releases ignore them.
	Centre   string `json:"centre,omitempty"`
	Language string `json:"language,omitempty"`
	Warm     bool   `json:"warm,omitempty"`
	Note     string `json:"note,omitempty"`
	Alias    string `json:"alias,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Support is the support id of a transfer to the supervisor reading
	// along (transfer.go, support.go).
	Support string `json:"support,omitempty"`
}

// VisitorSink receives what the switchboard tells a visitor. Calls are made
// from one goroutine per contact, in order; they must not block for long.
type VisitorSink interface {
	// Queued tells the visitor their place among the contacts waiting here
	// for their channel and language (from 1) and what to expect (wait.go):
	// on arrival, again whenever either changes, but at most once per
	// WaitResendEvery.
	Queued(position int, wait Estimate)
	Connected(alias string)
	Event(e Event)
	// Requeued says the volunteer's centre was lost; undelivered counts the
	// visitor's messages that were not acknowledged.
	Requeued(undelivered int)
	Closed(reason string)
}

// Offer is what rings on a volunteer's console.
type Offer struct {
	Contact  string    `json:"contact"`
	Channel  string    `json:"channel"`
	Language string    `json:"language"`
	From     string    `json:"from_centre,omitempty"`
	Until    time.Time `json:"until"`
	// Transfer: another volunteer hands this conversation over; Note is
	// their private handover note (memory only, never to the visitor).
	Transfer bool   `json:"transfer,omitempty"`
	Note     string `json:"note,omitempty"`
	// Urgent: the visitor or caller said they need someone right now
	// (urgent.go); the console shows it.
	Urgent bool `json:"urgent,omitempty"`
}

// ConsoleSink receives what the switchboard tells a volunteer's console.
// Calls are made in order from one goroutine per volunteer.
type ConsoleSink interface {
	Offer(o Offer)
	OfferWithdrawn(contact, reason string)
	Connected(contact, fromCentre string)
	Event(contact string, e Event)
	// Lost says the visitor's centre was lost mid-conversation.
	Lost(contact string, undelivered int)
	Availability(channels map[string]bool, active, capacity int)
}

// Peer is the far end of an overflowed conversation (the relay to the other
// centre). Send must not block for long.
type Peer interface {
	Send(e Event) error
	// Close ends the relay; reason is for the other side.
	Close(reason string)
}

// Volunteer is what the switchboard needs of a roster volunteer.
type Volunteer struct {
	ID        string
	Alias     string
	Channels  []string
	Languages []string
	Capacity  int
}

// MaxPhoneBytes bounds the phone a volunteer gives for calls.
const MaxPhoneBytes = 128
