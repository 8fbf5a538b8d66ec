package api

// The JSON frames of the visitor and console sockets: strict decoding,
// encoding, and the error codes a refusal maps to (docs/api.md).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// frameError is a refused frame: code goes into the error frame.
type frameError struct {
	code string
	msg  string
}

func (e *frameError) Error() string { return e.msg }

func badFrame(code, format string, args ...any) error {
	return &frameError{code: code, msg: fmt.Sprintf(format, args...)}
}

// decodeFrame parses one frame strictly into v.
func decodeFrame(b []byte, v any) error {
	if len(b) > maxFrameBytes {
		return badFrame("too_large", "frame of %d bytes, limit %d", len(b), maxFrameBytes)
	}
	if !utf8.Valid(b) {
		return badFrame("malformed", "frame is not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badFrame("malformed", "malformed frame: %s", clipText(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badFrame("malformed", "malformed frame: trailing data after the JSON object")
	}
	return nil
}

// visitorFrame is what a visitor may send.
type visitorFrame struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Text string `json:"text,omitempty"`
}

// decodeVisitorFrame parses and shape-checks one visitor frame. Sizes and
// encoding of id and text are the switchboard's to check.
func decodeVisitorFrame(b []byte) (visitorFrame, error) {
	var f visitorFrame
	if err := decodeFrame(b, &f); err != nil {
		return visitorFrame{}, err
	}
	switch f.Type {
	case "message":
		if f.ID == "" || f.Text == "" {
			return visitorFrame{}, badFrame("bad_frame", "a message needs an id and a text")
		}
	case "typing", "end", "stay":
		if f.ID != "" || f.Text != "" {
			return visitorFrame{}, badFrame("bad_frame", "%s takes no id or text", f.Type)
		}
	case "":
		return visitorFrame{}, badFrame("bad_frame", "the frame has no type")
	default:
		return visitorFrame{}, badFrame("unknown_type", "unknown type %q (want message, typing, end or stay)", clipText(f.Type))
	}
	return f, nil
}

// Outgoing frames. Contact is set only on the console.
type (
	queuedFrame struct {
		Type     string `json:"type"`
		Position int    `json:"position"`
		// Wait is a switchboard.WaitKind; WaitMinutes comes with
		// "minutes" (about that many) and "long" (more than that many).
		Wait        string `json:"wait"`
		WaitMinutes int    `json:"wait_minutes,omitempty"`
		// EmergencyNumbers come whenever nobody is free for the visitor
		// (every wait but "free_now"), so the page can say where to turn
		// now without asking again.
		EmergencyNumbers []consensus.EmergencyNumber `json:"emergency_numbers,omitempty"`
		// MovedBack: the place grew because someone came in ahead
		// (switchboard/urgent.go); the page says so.
		MovedBack bool `json:"moved_back,omitempty"`
		// MovedBackFor says who came in ahead: "urgent", or "returning"
		// (someone whose conversation was cut off came back ahead).
		MovedBackFor string `json:"moved_back_for,omitempty"`
	}
	aliasFrame struct {
		Type  string `json:"type"`
		Alias string `json:"alias"`
		// Resume comes with a conversation answered at another centre,
		// for a page that asked (resume.go); Ticket with one answered here.
		Resume *resumeInfo `json:"resume,omitempty"`
		Ticket string      `json:"ticket,omitempty"`
	}
	ticketFrame struct {
		Type   string `json:"type"`
		Ticket string `json:"ticket"`
	}
	contactFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
	}
	idFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
		ID      string `json:"id"`
	}
	messageFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
		ID      string `json:"id"`
		Text    string `json:"text"`
		// Alias names the volunteer who wrote, to a visitor, while two
		// are in the conversation (a warm transfer).
		Alias string `json:"alias,omitempty"`
	}
	endedFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
		By      string `json:"by"`
	}
	undeliveredFrame struct {
		Type        string `json:"type"`
		Contact     string `json:"contact,omitempty"`
		Undelivered int    `json:"undelivered"`
	}
	closedFrame struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	errorFrame struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Error   string `json:"error"`
		Contact string `json:"contact,omitempty"`
		ID      string `json:"id,omitempty"`
		// RetryAfterSeconds comes with slow_down: when to send the
		// refused message again.
		RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	}
	queueFullFrame struct {
		Type             string                      `json:"type"`
		Code             string                      `json:"code"`
		Error            string                      `json:"error"`
		EmergencyNumbers []consensus.EmergencyNumber `json:"emergency_numbers"`
	}
)

func encodeFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own frame types are encoded; they always marshal.
		b, _ = json.Marshal(errorFrame{Type: "error", Code: "internal", Error: "a frame could not be encoded"})
	}
	return b
}

// readFrame decodes one incoming frame of a socket. A frame it refuses is
// answered with an error frame, and the socket goes on: one bad frame is
// the sender's mistake, not a reason to end a conversation.
func readFrame[F any](ws *wsock, typ websocket.MessageType, b []byte, decode func([]byte) (F, error)) (F, bool) {
	var f F
	if typ != websocket.MessageText {
		ws.send(errorFrame{Type: "error", Code: "bad_frame", Error: "send JSON in text frames, not binary"})
		return f, false
	}
	f, err := decode(b)
	if err != nil {
		ws.send(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error()})
		return f, false
	}
	return f, true
}

// errorCode maps a switchboard refusal to an error frame code.
func errorCode(err error) string {
	var fe *frameError
	if errors.As(err, &fe) {
		return fe.code
	}
	// In this order: the first that err is wins.
	codes := []struct {
		err  error
		code string
	}{
		{switchboard.ErrBadMessage, "bad_message"},
		{switchboard.ErrUnknownContact, "unknown_contact"},
		{switchboard.ErrOfferGone, "offer_gone"},
		{switchboard.ErrNotSignedIn, "not_signed_in"},
		{switchboard.ErrEnded, "ended"},
		{switchboard.ErrClosed, "closed"},
		{switchboard.ErrBadRequest, "bad_request"},
		{switchboard.ErrDraining, "draining"},
		{switchboard.ErrFlooding, "flooding"},
		{switchboard.ErrSlowDown, "slow_down"},
		{switchboard.ErrQueueFull, "queue_full"},
		{switchboard.ErrResumeRefused, "resume_refused"},
		{switchboard.ErrCareHolds, "care_holds"},
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

func clipText(s string) string {
	if len(s) <= 80 {
		return s
	}
	cut := 80
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
