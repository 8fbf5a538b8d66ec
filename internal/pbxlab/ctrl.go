package pbxlab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// Event is one event baresip's ctrl_tcp module reported (type
// CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_RTPESTAB,
// CALL_CLOSED, ...). PeerURI is the other side's SIP URI: a caller's
// identity, so tests compare it but must not log it.
type Event struct {
	Type      string `json:"type"`
	Class     string `json:"class"`
	Direction string `json:"direction"`
	PeerURI   string `json:"peeruri"`
	Param     string `json:"param"`
}

// ctrlMessage is any message ctrl_tcp sends: an event or the response to a
// command.
type ctrlMessage struct {
	Event
	IsEvent    bool   `json:"event"`
	IsResponse bool   `json:"response"`
	OK         bool   `json:"ok"`
	Data       string `json:"data"`
	Token      string `json:"token"`
}

type ctrlCommand struct {
	Command string `json:"command"`
	Params  string `json:"params,omitempty"`
	Token   string `json:"token"`
}

// errNetstring is a frame on the control connection that is no netstring.
var errNetstring = errors.New("malformed netstring")

// readNetstring reads one "len:payload," frame (ctrl_tcp's framing).
func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, fmt.Errorf("read netstring: %w", err)
	}
	n, err := strconv.Atoi(head[:len(head)-1])
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("read netstring length %q: %w", head, errNetstring)
	}
	b := make([]byte, n+1)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read netstring: %w", err)
	}
	if b[n] != ',' {
		return nil, fmt.Errorf("read netstring: no trailing comma: %w", errNetstring)
	}
	return b[:n], nil
}

// writeCommand sends one command as a netstring.
func writeCommand(w net.Conn, c ctrlCommand) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("write command %s: %w", c.Command, err)
	}
	frame := append([]byte(strconv.Itoa(len(b))+":"), b...)
	frame = append(frame, ',')
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("write command %s: %w", c.Command, err)
	}
	return nil
}
