package main

import (
	"fmt"
	"strings"
)

// waitLine words a visitor's queued frame (docs/api.md) in the chat's
// language, as the chat page's catalogues do: the place, the wait, and
// when nobody is free for them, where to turn now.
func waitLine(tx chatText, m map[string]any) string {
	minutes, _ := m["wait_minutes"].(float64)
	var wait string
	switch m["wait"] {
	case "free_now":
		wait = tx.WaitFree
	case "minutes":
		wait = fmt.Sprintf(tx.WaitMinutes, int(minutes))
		if minutes == 1 {
			wait = tx.WaitMinute
		}
	case "long":
		wait = fmt.Sprintf(tx.WaitLong, int(minutes))
	case "no_one_on_duty":
	default: // "several", and any kind this client does not know
		wait = tx.WaitSeveral
	}
	line := fmt.Sprintf(tx.Queued, m["position"])
	if wait != "" {
		line += tx.Estimated + wait
	}
	if m["wait"] == "free_now" {
		return line + "]"
	}
	// noticeBusy is two sentences: nobody is free, and whom to call.
	head, call := tx.NoticeBusy, ""
	if i := strings.LastIndex(tx.NoticeBusy, ". "); i >= 0 {
		head, call = tx.NoticeBusy[:i], tx.NoticeBusy[i:]
	}
	line += ". " + head
	var numbers []string
	nums, _ := m["emergency_numbers"].([]any)
	for _, n := range nums {
		if e, ok := n.(map[string]any); ok {
			name := e["name"]
			if names, ok := e["names"].(map[string]any); ok && names[tx.lang] != nil {
				name = names[tx.lang]
			}
			numbers = append(numbers, fmt.Sprintf("%v: %v", name, e["number"]))
		}
	}
	if len(numbers) > 0 && call != "" {
		line += call + " " + strings.Join(numbers, ", ")
	}
	return line + "]"
}
