package main

import (
	"fmt"
	"strings"
)

// waitLine words a visitor's queued frame (docs/api.md) as the chat page's
// English catalogue does: the place, the wait, and when nobody is free for
// them, where to turn now.
func waitLine(m map[string]any) string {
	minutes, _ := m["wait_minutes"].(float64)
	var wait string
	switch m["wait"] {
	case "free_now":
		wait = "less than a minute"
	case "minutes":
		wait = fmt.Sprintf("about %.0f minutes", minutes)
		if minutes == 1 {
			wait = "about 1 minute"
		}
	case "long":
		wait = fmt.Sprintf("more than %.0f minutes", minutes)
	case "no_one_on_duty":
	default: // "several", and any kind this client does not know
		wait = "several minutes"
	}
	line := fmt.Sprintf("[you are number %v in the queue", m["position"])
	if wait != "" {
		line += "; estimated wait: " + wait
	}
	if m["wait"] == "free_now" {
		return line + "]"
	}
	line += ". No one is free right now, but you keep your place in the queue"
	var numbers []string
	nums, _ := m["emergency_numbers"].([]any)
	for _, n := range nums {
		if e, ok := n.(map[string]any); ok {
			numbers = append(numbers, fmt.Sprintf("%v %v", e["name"], e["number"]))
		}
	}
	if len(numbers) > 0 {
		line += ". If you need help straight away, call: " + strings.Join(numbers, ", ")
	}
	return line + "]"
}
