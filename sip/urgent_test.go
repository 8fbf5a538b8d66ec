package sip

import (
	"strings"
	"testing"
)

func TestCallUrgent(t *testing.T) {
	for _, c := range []struct {
		priority, x string
		want        bool
	}{
		{"emergency", "", true},
		{"Urgent", "", true},
		{" urgent ", "", true},
		{"normal", "", false},
		{"non-urgent", "", false},
		{"", "1", true},
		{"", "0", false},
		{"", "yes", false},
		{"", "", false},
		{strings.Repeat(" ", 40) + "urgent", "", false},
		{"normal", "1", true},
	} {
		if got := CallUrgent(c.priority, c.x); got != c.want {
			t.Errorf("CallUrgent(%q, %q) = %v, want %v", c.priority, c.x, got, c.want)
		}
	}
}

// FuzzCallUrgent: whatever a PBX (or anyone who spoofs it) puts in the two
// headers, reading them never panics, reads a bounded value, and says
// urgent only for the documented values.
func FuzzCallUrgent(f *testing.F) {
	for _, s := range []string{"emergency", "URGENT", "normal", "non-urgent", "1", "", "\x00", strings.Repeat("u", 100)} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, priority, x string) {
		if !CallUrgent(priority, x) {
			return
		}
		p := strings.ToLower(strings.TrimSpace(priority))
		okP := len(priority) <= maxPriorityLen && (p == "emergency" || p == "urgent")
		okX := len(x) <= maxPriorityLen && strings.TrimSpace(x) == "1"
		if !okP && !okX {
			t.Fatalf("urgent from Priority %q, X-Helpmesh-Urgent %q", priority, x)
		}
	})
}
