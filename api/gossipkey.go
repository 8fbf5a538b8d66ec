package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/helpmesh/helpmesh/consensus"
)

// GossipKeyResponse answers a rotation with the generation it committed;
// never the key.
type GossipKeyResponse struct {
	Generation uint64 `json:"generation"`
}

// rotateGossipKey makes a fresh gossip key here and proposes it, one
// generation after this centre's roster, so that every admitted centre
// switches to it and a removed one is shut out of gossip. The body is empty
// or {}: there is nothing to choose.
func (s *Server) rotateGossipKey(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", maxBody))
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		var empty struct{}
		if !decodeBody(w, r, &empty) {
			return
		}
	}
	cmd, err := consensus.RotateGossipKeyCommand(s.cfg.Centre.Roster())
	if err != nil {
		s.log.Error("gossip key rotation", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not make a new gossip key")
		return
	}
	if !s.propose(w, r, cmd) {
		return
	}
	s.log.Info("gossip key rotated", "generation", cmd.GossipKey.Generation)
	writeJSON(w, http.StatusOK, GossipKeyResponse{Generation: cmd.GossipKey.Generation})
}
