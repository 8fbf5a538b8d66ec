// Package channels is the one list of the ways a contact can arrive. Adding
// a channel is one entry here plus its own way in (the visitor's socket for
// chat, SIP for phone); the roster's validation, the switchboard, the
// metrics and the pages all read this list.
package channels

import "slices"

// The channels.
const (
	Chat  = "chat"
	Phone = "phone"
)

// all is never changed: All returns a copy.
var all = []string{Chat, Phone}

// All returns every channel, in a fixed order.
func All() []string { return slices.Clone(all) }

// Known reports whether name is a channel.
func Known(name string) bool { return slices.Contains(all, name) }
