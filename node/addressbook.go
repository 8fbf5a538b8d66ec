package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/helpmesh/helpmesh/consensus"
)

// AddressBookFile caches how to reach the other centres.
const AddressBookFile = "centres.json"

// maxAddressBook bounds the cache we read back.
const maxAddressBook = 8 << 20

// The address book exists because Raft replays its log into the roster only
// after it hears from a leader. Without it a restarted centre would know no
// one to dial, and one restarted while cut off from the quorum could not even
// gossip or overflow to the centres it can still reach.

func loadAddressBook(dir string) ([]consensus.Centre, error) {
	b, err := os.ReadFile(filepath.Join(dir, AddressBookFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load address book: %w", err)
	}
	if len(b) > maxAddressBook {
		return nil, fmt.Errorf("load address book: %d bytes is too large", len(b))
	}
	var cs []consensus.Centre
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("load address book: %w", err)
	}
	return cs, nil
}

func saveAddressBook(dir string, r consensus.Roster) error {
	cs := make([]consensus.Centre, 0, len(r.Centres))
	for _, id := range r.CentreIDs() {
		cs = append(cs, r.Centres[id])
	}
	b, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return fmt.Errorf("save address book: %w", err)
	}
	if old, err := os.ReadFile(filepath.Join(dir, AddressBookFile)); err == nil && slices.Equal(old, b) {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(dir, AddressBookFile), b, 0o600); err != nil {
		return fmt.Errorf("save address book: %w", err)
	}
	return nil
}
