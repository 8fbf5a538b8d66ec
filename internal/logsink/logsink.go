// Package logsink is a log destination that a component's goroutines may
// write while a test reads it: the privacy and refusal tests read what a
// centre logged, during the run, without a data race.
package logsink

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer whose content may be read at any time.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
