package sip

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestTokenSingleUse(t *testing.T) {
	vol := newTestCall("sip:vol@127.0.0.1:5064")
	s := NewTokenStore()
	tok := s.Issue(vol, time.Minute)
	if kind, v, err := ParseUser(tok); err != nil || kind != KindToken || v != tok {
		t.Fatalf("issued token %q does not parse as a token: %v %v %q", tok, kind, err, v)
	}
	if other := s.Issue(vol, time.Minute); other == tok {
		t.Fatalf("two issues gave the same token %q", tok)
	}
	if got, err := s.Redeem(tok); err != nil || got != vol {
		t.Fatalf("first redeem = %v, %v", got, err)
	}
	if _, err := s.Redeem(tok); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("second redeem: %v, want ErrTokenUsed", err)
	}
	if _, err := s.Redeem("AAAAAAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("forged: %v, want ErrTokenUnknown", err)
	}
}

// Expiry on synctest's fake clock: a token dies with its lease (410 Gone
// while remembered, then forgotten: 404), and a forgotten tombstone frees
// its memory.
func TestTokenExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vol := newTestCall("sip:vol@127.0.0.1:5064")
		s := NewTokenStore()
		tok := s.Issue(vol, 30*time.Second)
		time.Sleep(29 * time.Second)
		if s.Len() != 1 {
			t.Fatalf("live tokens before lease end: %d", s.Len())
		}
		time.Sleep(time.Second)
		if _, err := s.Redeem(tok); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("at lease end: %v, want ErrTokenExpired", err)
		}
		time.Sleep(tombstoneFor)
		if _, err := s.Redeem(tok); !errors.Is(err, ErrTokenUnknown) {
			t.Fatalf("after the tombstone: %v, want ErrTokenUnknown", err)
		}
		s.mu.Lock()
		n := len(s.live) + len(s.dead)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("store still holds %d entries", n)
		}
		// Between sweeps (at most one a second), Redeem still sees its
		// own token's lease end.
		short := s.Issue(vol, 500*time.Millisecond)
		time.Sleep(600 * time.Millisecond)
		if s.Len() != 0 {
			t.Fatalf("live tokens after a short lease: %d", s.Len())
		}
		if _, err := s.Redeem(short); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("a lease that ended between sweeps: %v, want ErrTokenExpired", err)
		}
	})
}
