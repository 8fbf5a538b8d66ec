package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// The terminal clients let the demo be tried without pages: one visitor
// chat, one volunteer console, each a line-based loop over the documented
// WebSocket protocol (docs/api.md).

func wsURL(server, path string) string {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u := strings.Replace(strings.Replace(server, "https://", "wss://", 1), "http://", "ws://", 1)
	return strings.TrimRight(u, "/") + path
}

func originOf(server string) string {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	return strings.TrimRight(server, "/")
}

func cmdChat(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the centre to chat at")
	lang := fs.String("lang", "nb", "language code")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, _, err := websocket.Dial(ctx, wsURL(*server, "/v1/chat?channel=chat&lang="+url.QueryEscape(*lang)),
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {originOf(*server)}}})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer c.CloseNow()
	fmt.Fprintln(stdout, "connected to the centre; type a message and Enter, /end to leave")
	var mu sync.Mutex
	go showFrames(ctx, c, stdout, &mu, func(m map[string]any) bool {
		switch m["type"] {
		case "queued":
			fmt.Fprintln(stdout, waitLine(m))
		case "connected":
			fmt.Fprintf(stdout, "[%v is here to listen]\n", m["alias"])
		case "message":
			fmt.Fprintf(stdout, "volunteer: %v\n", m["text"])
		case "typing":
			fmt.Fprintln(stdout, "[typing...]")
		case "delivered":
		case "ended":
			fmt.Fprintf(stdout, "[the conversation ended (%v)]\n", m["by"])
		case "requeued":
			fmt.Fprintf(stdout, "[the connection to the volunteer was lost; you are back in the queue (%v messages may not have arrived)]\n", m["undelivered"])
		default:
			return false
		}
		return true
	})
	n := 0
	err = eachLine(stdin, func(line string) (bool, error) {
		if line == "/end" {
			_ = wsjson.Write(ctx, c, map[string]string{"type": "end"})
			return true, nil
		}
		n++
		if err := wsjson.Write(ctx, c, map[string]string{"type": "message", "id": fmt.Sprintf("m%d", n), "text": line}); err != nil {
			return true, fmt.Errorf("chat: %w", err)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	_ = c.Close(websocket.StatusNormalClosure, "bye")
	return nil
}

func cmdVolunteer(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("volunteer", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "your home centre")
	id := fs.String("id", "", "your volunteer id")
	password := fs.String("password", "", "your password")
	phone := fs.String("phone", "", "take calls too, on this phone: an extension of your centre's PBX or sip:user@ip:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	body, _ := json.Marshal(map[string]string{"volunteer": *id, "password": *password})
	base := originOf(*server)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/volunteer/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("volunteer: login: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("volunteer: login refused (HTTP %d)", resp.StatusCode)
	}
	c, _, err := websocket.Dial(ctx, wsURL(*server, "/v1/console"), &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		return fmt.Errorf("volunteer: console: %w", err)
	}
	defer c.CloseNow()
	if err := wsjson.Write(ctx, c, map[string]any{"type": "available", "channel": "chat", "on": true}); err != nil {
		return err
	}
	channels := "chat"
	if *phone != "" {
		// Calls ring the phone, never this terminal: the console hears when
		// one is coming, picked up and over, and takes its categorisation.
		for _, f := range []map[string]any{{"type": "phone", "phone": *phone}, {"type": "available", "channel": "phone", "on": true}} {
			if err := wsjson.Write(ctx, c, f); err != nil {
				return err
			}
		}
		channels = "chat and calls on " + *phone
	}
	fmt.Fprintf(stdout, "signed in and available for %s. /accept, /decline, /end TOPIC AGE-GROUP, or type to answer\n", channels)
	var mu sync.Mutex
	current := ""
	go showFrames(ctx, c, stdout, &mu, func(m map[string]any) bool {
		switch m["type"] {
		case "offer":
			current, _ = m["contact"].(string)
			from := ""
			if f, ok := m["from_centre"].(string); ok && f != "" {
				from = " from " + f
			}
			if m["channel"] == "phone" {
				fmt.Fprintf(stdout, "[a call is coming to your phone%s (%v): answer it there, or /decline before it rings]\n", from, m["language"])
				break
			}
			fmt.Fprintf(stdout, "[offer%s (%v, %v): /accept or /decline]\n", from, m["channel"], m["language"])
		case "connected":
			if m["channel"] == "phone" {
				fmt.Fprintln(stdout, "[call picked up]")
				break
			}
			fmt.Fprintln(stdout, "[connected]")
		case "message":
			fmt.Fprintf(stdout, "visitor: %v\n", m["text"])
		case "ended":
			fmt.Fprintf(stdout, "[ended by %v; categorise with /end TOPIC AGE-GROUP]\n", m["by"])
		case "policy":
			fmt.Fprintf(stdout, "[topics: %v; age groups: %v]\n", m["topics"], m["age_groups"])
		case "categorised":
			fmt.Fprintln(stdout, "[categorisation recorded]")
		case "delivered", "availability", "typing":
		default:
			return false
		}
		return true
	})
	n := 0
	return eachLine(stdin, func(line string) (bool, error) {
		mu.Lock()
		contact := current
		mu.Unlock()
		var msg map[string]any
		switch f := strings.Fields(line); {
		case line == "/accept":
			msg = map[string]any{"type": "accept", "contact": contact}
		case line == "/decline":
			msg = map[string]any{"type": "decline", "contact": contact}
		case len(f) > 0 && f[0] == "/end":
			topic, age := "other", "unknown"
			if len(f) > 1 {
				topic = f[1]
			}
			if len(f) > 2 {
				age = f[2]
			}
			msg = map[string]any{"type": "end", "contact": contact, "topics": []string{topic}, "age_group": age}
		default:
			n++
			msg = map[string]any{"type": "message", "contact": contact, "id": fmt.Sprintf("r%d", n), "text": line}
		}
		return false, wsjson.Write(ctx, c, msg)
	})
}

// showFrames prints the frames c receives until it closes: each through
// show, holding mu (which guards what show sets aside); a frame show does
// not know (it returns false) is printed as it came.
func showFrames(ctx context.Context, c *websocket.Conn, stdout io.Writer, mu *sync.Mutex, show func(m map[string]any) bool) {
	for {
		var m map[string]any
		if err := wsjson.Read(ctx, c, &m); err != nil {
			return
		}
		mu.Lock()
		if !show(m) {
			b, _ := json.Marshal(m)
			fmt.Fprintf(stdout, "[%s]\n", b)
		}
		mu.Unlock()
	}
}

// eachLine calls do with each line typed, trimmed, skipping empty ones,
// until stdin ends or do says stop or fails.
func eachLine(stdin io.Reader, do func(line string) (stop bool, err error)) error {
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if stop, err := do(line); stop || err != nil {
			return err
		}
	}
	return nil
}
