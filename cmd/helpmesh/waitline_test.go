package main

import (
	"encoding/json"
	"testing"
)

func TestWaitLine(t *testing.T) {
	for frame, want := range map[string]string{
		`{"type":"queued","position":1,"wait":"free_now"}`: "[You are number 1 in the queue; estimated wait: less than a minute]",
		`{"type":"queued","position":2,"wait":"minutes","wait_minutes":4,"emergency_numbers":[{"name":"Police","number":"112"}]}`: "[You are number 2 in the queue; estimated wait: about 4 minutes. " +
			"No one is free right now, but you keep your place in the queue. If you need help straight away, call: Police: 112]",
		`{"type":"queued","position":1,"wait":"no_one_on_duty","emergency_numbers":[{"name":"Medical emergency","number":"113"},{"name":"Police","number":"112"}]}`: "[You are number 1 in the queue. " +
			"No one is free right now, but you keep your place in the queue. If you need help straight away, call: Medical emergency: 113, Police: 112]",
		`{"type":"queued","position":3,"wait":"long","wait_minutes":15}`: "[You are number 3 in the queue; estimated wait: more than 15 minutes. No one is free right now, but you keep your place in the queue]",
		`{"type":"queued","position":1,"wait":"several"}`:                "[You are number 1 in the queue; estimated wait: several minutes. No one is free right now, but you keep your place in the queue]",
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(frame), &m); err != nil {
			t.Fatal(err)
		}
		if got := waitLine(chatTextFor("en"), m); got != want {
			t.Errorf("%s:\n got %q\nwant %q", frame, got, want)
		}
	}
}

// A visitor who chose Norwegian reads the wait in Norwegian.
func TestWaitLineNorwegian(t *testing.T) {
	m := map[string]any{"type": "queued", "position": 2.0, "wait": "minutes", "wait_minutes": 4.0}
	if got, want := waitLine(chatTextFor("nb"), m), "[Du er nummer 2 i køen; ventetid: omtrent 4 minutter. Ingen er ledige akkurat nå, men du beholder plassen i køen]"; got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
