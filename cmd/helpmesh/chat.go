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
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/helpmesh/helpmesh/consensus"
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

// maxFrameBytes bounds one frame from the centre (a queued frame with the
// whole policy's emergency numbers is under 64 KiB).
const maxFrameBytes = 256 << 10

func cmdChat(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the centre to chat at")
	lang := fs.String("lang", "nb", "language code; nb, nn and en also set the client's own texts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tx := chatTextFor(*lang)
	// The page's /v1/info says whether the helpline is open and whether
	// anyone is free; without it the chat still works.
	info := fetchInfo(ctx, *server)
	c, _, err := websocket.Dial(ctx, wsURL(*server, "/v1/chat?channel=chat&lang="+url.QueryEscape(*lang)),
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {originOf(*server)}}})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer c.CloseNow()
	// A queued frame carries the policy's emergency numbers with their
	// names in every language: up to the policy's 48 KiB, past the
	// library's default 32 KiB limit.
	c.SetReadLimit(maxFrameBytes)
	frames := readFrames(ctx, c)
	fmt.Fprintln(stdout, tx.Intro)
	if info != nil && !info.Open {
		printNotice(stdout, tx, tx.NoticeClose, info.EmergencyNumbers)
	}
	// Until a volunteer has joined, the server refuses messages
	// (not_connected): lines wait here and go when one joins.
	var pending []string
	unsent := map[string]string{} // id -> text, until delivered
	connected, n := false, 0
	send := func(text string) error {
		n++
		id := fmt.Sprintf("m%d", n)
		unsent[id] = text
		return wsjson.Write(ctx, c, map[string]string{"type": "message", "id": id, "text": text})
	}
	lines := readLines(stdin)
	for {
		select {
		case <-ctx.Done():
			leaveChat(ctx, c)
			return nil
		case line, ok := <-lines:
			if !ok || line == "/end" {
				leaveChat(ctx, c)
				fmt.Fprintln(stdout, tx.Ended)
				return nil
			}
			if !connected {
				pending = append(pending, line)
				fmt.Fprintln(stdout, tx.Pending)
				continue
			}
			if err := send(line); err != nil {
				return fmt.Errorf("chat: %w", err)
			}
		case m, ok := <-frames:
			if !ok {
				fmt.Fprintln(stdout, tx.Lost)
				return fmt.Errorf("chat: the connection to the centre was lost")
			}
			switch m["type"] {
			case "queued":
				fmt.Fprintln(stdout, waitLine(tx, m))
			case "connected":
				connected = true
				fmt.Fprintf(stdout, tx.Connected+"\n", m["alias"])
				for _, text := range pending {
					if err := send(text); err != nil {
						return fmt.Errorf("chat: %w", err)
					}
				}
				pending = nil
			case "message":
				fmt.Fprintf(stdout, "%s: %v\n", tx.Volunteer, m["text"])
			case "typing":
				fmt.Fprintln(stdout, tx.Typing)
			case "delivered":
				id, _ := m["id"].(string)
				delete(unsent, id)
			case "requeued":
				connected = false
				fmt.Fprintf(stdout, tx.Requeued+"\n", m["undelivered"])
			case "ended":
				fmt.Fprintln(stdout, tx.Ended)
				closeWithin(c, time.Second)
				return nil
			case "closed":
				fmt.Fprintln(stdout, tx.Closed)
				return nil
			case "error":
				id, _ := m["id"].(string)
				switch m["code"] {
				case "not_connected":
					// The volunteer was lost as this was sent: it waits
					// for the next one.
					if text, ok := unsent[id]; ok {
						delete(unsent, id)
						pending = append(pending, text)
						fmt.Fprintln(stdout, tx.Pending)
					}
				case "queue_full":
					fmt.Fprintln(stdout, tx.QueueFull)
					printNotice(stdout, tx, tx.NoticeFull, emergencyNumbers(m["emergency_numbers"]))
					return nil
				case "ended":
					fmt.Fprintln(stdout, tx.Ended)
					return nil
				default:
					delete(unsent, id)
					fmt.Fprintf(stdout, tx.NotSent+"\n", m["error"])
				}
			}
		}
	}
}

// leaveChat ends the visitor's conversation and closes the socket, within
// a second also when ctx has ended (Ctrl-C).
func leaveChat(ctx context.Context, c *websocket.Conn) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	_ = wsjson.Write(wctx, c, map[string]string{"type": "end"})
	closeWithin(c, 500*time.Millisecond)
}

// closeWithin closes c with a normal close, or drops it if the other side
// does not answer the close within d.
func closeWithin(c *websocket.Conn, d time.Duration) {
	done := make(chan struct{})
	go func() {
		_ = c.Close(websocket.StatusNormalClosure, "bye")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		_ = c.CloseNow()
	}
}

// chatInfo is the part of GET /v1/info the terminal chat uses.
type chatInfo struct {
	Open             bool                        `json:"open"`
	VolunteersFree   bool                        `json:"volunteers_free"`
	EmergencyNumbers []consensus.EmergencyNumber `json:"emergency_numbers"`
}

// fetchInfo asks the centre for /v1/info; nil if it cannot say.
func fetchInfo(ctx context.Context, server string) *chatInfo {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, originOf(server)+"/v1/info", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var in chatInfo
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&in) != nil {
		return nil
	}
	return &in
}

// emergencyNumbers reads a queue_full frame's emergency_numbers.
func emergencyNumbers(v any) []consensus.EmergencyNumber {
	b, _ := json.Marshal(v)
	var out []consensus.EmergencyNumber
	_ = json.Unmarshal(b, &out)
	return out
}

func printNotice(w io.Writer, tx chatText, notice string, numbers []consensus.EmergencyNumber) {
	fmt.Fprintln(w, notice)
	for _, e := range numbers {
		fmt.Fprintf(w, "  %s: %s\n", e.NameIn(tx.lang), e.Number)
	}
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
	c.SetReadLimit(maxFrameBytes)
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
	frames := readFrames(ctx, c)
	lines := readLines(stdin)
	current, n := "", 0
	for {
		select {
		case <-ctx.Done():
			// Ctrl-C: close the console and sign out, within a second.
			closeWithin(c, 500*time.Millisecond)
			signOut(ctx, hc, base)
			fmt.Fprintln(stdout, "signed out")
			return nil
		case m, ok := <-frames:
			if !ok {
				signOut(ctx, hc, base)
				return fmt.Errorf("volunteer: the centre closed the console")
			}
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
				fmt.Fprintf(stdout, "[topics: %s; age groups: %s]\n", joinList(m["topics"]), joinList(m["age_groups"]))
			case "categorised":
				fmt.Fprintln(stdout, "[categorisation recorded]")
			case "delivered", "availability", "typing":
			case "softphone":
				// The centre's node is its phone: calls can be answered
				// in the browser console, not in this terminal.
				fmt.Fprintln(stdout, "[this centre's calls can be answered in the browser console; here, give a SIP phone with --phone]")
			default:
				b, _ := json.Marshal(m)
				fmt.Fprintf(stdout, "[%s]\n", b)
			}
		case line, ok := <-lines:
			if !ok {
				closeWithin(c, 500*time.Millisecond)
				signOut(ctx, hc, base)
				return nil
			}
			var msg map[string]any
			switch f := strings.Fields(line); {
			case line == "/accept":
				msg = map[string]any{"type": "accept", "contact": current}
			case line == "/decline":
				msg = map[string]any{"type": "decline", "contact": current}
			case len(f) > 0 && f[0] == "/end":
				topic, age := "other", "unknown"
				if len(f) > 1 {
					topic = f[1]
				}
				if len(f) > 2 {
					age = f[2]
				}
				msg = map[string]any{"type": "end", "contact": current, "topics": []string{topic}, "age_group": age}
			default:
				n++
				msg = map[string]any{"type": "message", "contact": current, "id": fmt.Sprintf("r%d", n), "text": line}
			}
			if err := wsjson.Write(ctx, c, msg); err != nil {
				return fmt.Errorf("volunteer: %w", err)
			}
		}
	}
}

// signOut ends the volunteer's session at the centre (POST
// /v1/volunteer/logout), giving up after half a second.
func signOut(ctx context.Context, hc *http.Client, base string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/volunteer/logout", nil)
	if err != nil {
		return
	}
	req.Header.Set("Origin", base)
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

// joinList prints a JSON list as a reader would write it: a, b, c.
func joinList(v any) string {
	items, _ := v.([]any)
	s := make([]string, 0, len(items))
	for _, it := range items {
		s = append(s, fmt.Sprint(it))
	}
	return strings.Join(s, ", ")
}

// readFrames delivers the JSON frames c receives until it closes. It reads
// with its own context: a read cancelled by ctx would drop the connection
// before the client could say goodbye on it.
func readFrames(ctx context.Context, c *websocket.Conn) <-chan map[string]any {
	out := make(chan map[string]any)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer cancel()
		defer close(out)
		for {
			var m map[string]any
			if err := wsjson.Read(rctx, c, &m); err != nil {
				return
			}
			out <- m
		}
	}()
	return out
}

// readLines delivers each line typed, trimmed, skipping empty ones, until
// stdin ends. It reads in its own goroutine so that a signal or the server
// can end the client while it waits for a line; that goroutine ends with
// the process.
func readLines(stdin io.Reader) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				out <- line
			}
		}
	}()
	return out
}
