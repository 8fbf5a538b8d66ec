package consensus

import (
	"fmt"
	"time"

	// The zone database travels in the binary: a FROM-scratch image has none.
	_ "time/tzdata"
)

// OpenAt reports whether the helpline is open at t under the policy's hours.
// A policy without hours is always open.
func (p Policy) OpenAt(t time.Time) bool {
	if len(p.OpenHours) == 0 {
		return true
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	t = t.In(loc)
	now := t.Hour()*60 + t.Minute()
	yesterday := (int(t.Weekday()) + 6) % 7
	for _, o := range p.OpenHours {
		from, to := minutes(o.From), minutes(o.To)
		switch {
		case from <= to && o.Weekday == int(t.Weekday()) && now >= from && now < to:
			return true
		case from > to && o.Weekday == int(t.Weekday()) && now >= from:
			return true // opened this evening, runs past midnight
		case from > to && o.Weekday == yesterday && now < to:
			return true // opened yesterday evening
		}
	}
	return false
}

func minutes(hhmm string) int {
	var h, m int
	_, _ = fmt.Sscanf(hhmm, "%d:%d", &h, &m)
	return h*60 + m
}
