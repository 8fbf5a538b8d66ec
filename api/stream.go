package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// federationEvents streams the federation view as server-sent events, so
// the overview page updates without reloading. It is sent when it changes
// (checked every second) and at least every 10 s as a keep-alive.
func (s *Server) federationEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", "streaming unsupported")
		return
	}
	// The http.Server's write timeout must not cut a long-lived stream.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last []byte
	lastSent := time.Time{}
	for {
		v := s.cfg.Centre.Federation()
		// Ages change every second; leave them out of the change test.
		key := v
		key.Centres = append(key.Centres[:0:0], v.Centres...)
		for i := range key.Centres {
			key.Centres[i].AvailabilityAgeSeconds = 0
		}
		k, _ := json.Marshal(key)
		if string(k) != string(last) || time.Since(lastSent) > 10*time.Second {
			b, err := json.Marshal(v)
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			flusher.Flush()
			last, lastSent = k, time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}
