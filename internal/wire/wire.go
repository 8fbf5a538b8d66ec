// Package wire is the one framing every helpmesh stream protocol between
// centres uses: a 4-byte big-endian length, then a JSON document. Every frame
// is size-limited and every read runs under a deadline, so a slow or hostile
// peer can neither exhaust memory nor pin a goroutine.
package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

var (
	// ErrFrameTooLarge is returned when a peer announces a frame above the limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrEmptyFrame is returned for a zero-length frame, which no protocol sends.
	ErrEmptyFrame = errors.New("empty frame")
)

// Deadliner is the part of a stream or connection that can bound a read or write.
type Deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Write encodes v as one frame.
func Write(w io.Writer, v any, limit int) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if len(body) > limit {
		return fmt.Errorf("write frame: %d bytes: %w", len(body), ErrFrameTooLarge)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// Read decodes one frame into v, refusing frames above limit and unknown fields.
func Read(r io.Reader, v any, limit int) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("read frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return fmt.Errorf("read frame: %w", ErrEmptyFrame)
	}
	if int64(n) > int64(limit) {
		return fmt.Errorf("read frame: %d bytes announced, limit %d: %w", n, limit, ErrFrameTooLarge)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("read frame body: %w", err)
	}
	return Unmarshal(body, v)
}

// Unmarshal decodes one frame's body strictly: unknown fields and trailing
// data are errors, so that a version skew is noticed instead of half-read.
func Unmarshal(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	// More() is false before a stray '}' or ']', so ask for the next token:
	// only the end of the input will do.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("decode frame: trailing data")
	}
	return nil
}

// Exchange writes req and reads the reply, all within timeout.
func Exchange(rw io.ReadWriter, d Deadliner, req, resp any, reqLimit, respLimit int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	_ = d.SetWriteDeadline(deadline)
	_ = d.SetReadDeadline(deadline)
	if err := Write(rw, req, reqLimit); err != nil {
		return err
	}
	return Read(rw, resp, respLimit)
}
