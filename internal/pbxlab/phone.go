package pbxlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/logsink"
)

// Answer is how a phone treats an incoming call.
type Answer int

const (
	// AnswerManual rings until the test calls Phone.Accept.
	AnswerManual Answer = iota
	// AnswerAuto picks up at once (a volunteer's desk phone in the rig).
	AnswerAuto
	// AnswerNever rings and never picks up (a busy own queue); Accept fails.
	AnswerNever
)

var (
	// ErrNeverAnswers is returned by Accept on an AnswerNever phone.
	ErrNeverAnswers = errors.New("phone never answers")
	// ErrCommandFailed is a ctrl_tcp command that baresip answered "not ok".
	ErrCommandFailed = errors.New("baresip command failed")
	// ErrPhoneGone is returned while waiting on a phone whose control
	// connection ended (baresip exited).
	ErrPhoneGone = errors.New("phone control connection closed")
)

// PhoneConfig describes one baresip phone.
type PhoneConfig struct {
	// User is the account's user part: baresip answers only INVITEs whose
	// Request-URI user is this (telephony-lab gotcha 13).
	User string
	// DisplayName, if set, is the name the phone gives in its From (a
	// caller's name: a privacy canary in the tests).
	DisplayName string
	Answer      Answer
	// Speak is the WAV the phone sends as its microphone (Speech makes
	// one); empty means 60 s of silence. The call ends when it ends.
	Speak string
	// RecordDir receives baresip's recordings of each call; empty means a
	// fresh t.TempDir().
	RecordDir string
}

// Phone is one running baresip, on 127.0.0.1 (SIP and RTP: `-n 127.0.0.1`,
// gotcha 11), controlled through ctrl_tcp.
type Phone struct {
	t       testing.TB
	cfg     PhoneConfig
	sipPort int
	log     *logsink.Buffer
	proc    *process

	conn    net.Conn
	writeMu sync.Mutex // one command at a time on conn
	tokens  int        // under writeMu

	mu        sync.Mutex
	events    []Event
	taken     []bool // events Await has returned
	responses map[string]chan ctrlMessage
	changed   chan struct{} // closed and replaced on every new event
	closed    bool
}

// StartPhone starts baresip with its own SIP port, RTP port range, control
// port and config directory, and returns once its control connection is up.
// t.Cleanup stops it with SIGTERM.
func StartPhone(t testing.TB, cfg PhoneConfig) *Phone {
	t.Helper()
	if cfg.User == "" {
		t.Fatal("pbxlab: StartPhone needs a User")
	}
	dir := t.TempDir()
	if cfg.RecordDir == "" {
		cfg.RecordDir = t.TempDir()
	}
	if cfg.Speak == "" {
		cfg.Speak = silence(t, dir, 60*time.Second)
	}
	p := &Phone{t: t, cfg: cfg, sipPort: freeSIPPort(t), log: &logsink.Buffer{},
		responses: map[string]chan ctrlMessage{}, changed: make(chan struct{})}
	ctrlPort := freeTCPPort(t)
	rtpFirst, rtpLast := freeRTPRange(t, 10)
	mode := "manual"
	if cfg.Answer == AnswerAuto {
		mode = "auto"
	}
	config := strings.Join([]string{
		"poll_method epoll",
		fmt.Sprintf("sip_listen 127.0.0.1:%d", p.sipPort),
		"call_local_timeout 120",
		"call_max_calls 4",
		// aufile is a source only; aubridge,nil plays into nothing, and
		// the sndfile filter records both directions (gotcha 10).
		"audio_player aubridge,nil",
		"audio_source aufile," + cfg.Speak,
		"audio_alert aubridge,nil",
		"audio_level no",
		"ausrc_format s16", "auplay_format s16", "auenc_format s16", "audec_format s16",
		"audio_buffer 20-160",
		fmt.Sprintf("rtp_ports %d-%d", rtpFirst, rtpLast),
		"rtcp_mux no",
		"jitter_buffer_delay 5-10",
		"rtp_stats no",
		"net_interface 127.0.0.1",
		"module_path /usr/lib/baresip/modules",
		"module g711.so", "module sndfile.so", "module aufile.so", "module aubridge.so",
		"module_tmp account.so",
		// menu does auto-answer and the dial/accept/hangup commands.
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		fmt.Sprintf("ctrl_tcp_listen 127.0.0.1:%d", ctrlPort),
		"snd_path " + cfg.RecordDir,
	}, "\n") + "\n"
	account := fmt.Sprintf("<sip:%s@127.0.0.1:%d>;regint=0;answermode=%s;audio_codecs=PCMA,PCMU\n", cfg.User, p.sipPort, mode)
	if cfg.DisplayName != "" {
		account = fmt.Sprintf("%q %s", cfg.DisplayName, account)
	}
	for name, content := range map[string]string{"config": config, "accounts": account, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("pbxlab: phone %s: %v", cfg.User, err)
		}
	}

	ready := make(chan struct{})
	cmd := exec.Command("baresip", "-f", dir, "-n", "127.0.0.1")
	w := &markWriter{dst: p.log, mark: "baresip is ready.", seen: ready}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	proc, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("pbxlab: phone %s: %v", cfg.User, err)
	}
	p.proc = proc
	t.Cleanup(func() {
		if p.conn != nil {
			p.conn.Close()
		}
		// baresip's own shutdown can outlast a few seconds on a loaded
		// machine (CI run 6: "ignored terminated for 5s"); a phone that
		// had to be killed is the rig's business, not the test's verdict.
		// Any other way out (an exit status not ours) still fails it.
		switch err := proc.stop(syscall.SIGTERM, 10*time.Second); {
		case errors.Is(err, errKilled):
			t.Logf("pbxlab: stop phone %s: %v", cfg.User, err)
		case err != nil:
			t.Errorf("pbxlab: stop phone %s: %v\n%s", cfg.User, err, p.logTail())
		}
		if t.Failed() {
			t.Logf("phone %s log (tail):\n%s", cfg.User, p.logTail())
		}
	})
	select {
	case <-ready:
	case <-proc.done:
		t.Fatalf("pbxlab: phone %s exited at start: %v\n%s", cfg.User, proc.err, p.logTail())
	case <-time.After(10 * time.Second):
		t.Fatalf("pbxlab: phone %s not ready after 10 s\n%s", cfg.User, p.logTail())
	}
	conn, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", ctrlPort), 2*time.Second)
	if err != nil {
		t.Fatalf("pbxlab: phone %s: control connection: %v\n%s", cfg.User, err, p.logTail())
	}
	p.conn = conn
	go p.read()
	return p
}

// URI is the phone's own address, sip:User@127.0.0.1:port: dial it, or
// redirect a call to it.
func (p *Phone) URI() string { return fmt.Sprintf("sip:%s@127.0.0.1:%d", p.cfg.User, p.sipPort) }

// Log is what baresip printed so far (its status line included).
func (p *Phone) Log() string { return p.log.String() }

func (p *Phone) logTail() string {
	// The menu redraws a status line with \r; keep the log readable.
	return tail(strings.ReplaceAll(p.log.String(), "\r", "\n"), 30)
}

// Dial places a call to uri.
func (p *Phone) Dial(ctx context.Context, uri string) error {
	if _, err := p.command(ctx, "dial", uri); err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	return nil
}

// Accept picks up the ringing call.
func (p *Phone) Accept(ctx context.Context) error {
	if p.cfg.Answer == AnswerNever {
		return fmt.Errorf("accept on %s: %w", p.cfg.User, ErrNeverAnswers)
	}
	if _, err := p.command(ctx, "accept", ""); err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	return nil
}

// Hangup ends the current call.
func (p *Phone) Hangup(ctx context.Context) error {
	if _, err := p.command(ctx, "hangup", ""); err != nil {
		return fmt.Errorf("hangup: %w", err)
	}
	return nil
}

// command sends one ctrl_tcp command and waits for its response.
func (p *Phone) command(ctx context.Context, name, params string) (string, error) {
	p.writeMu.Lock()
	p.tokens++
	token := strconv.Itoa(p.tokens)
	resp := make(chan ctrlMessage, 1)
	p.mu.Lock()
	if p.closed { // the reader is gone: nobody would answer
		p.mu.Unlock()
		p.writeMu.Unlock()
		return "", fmt.Errorf("%s: %w", name, ErrPhoneGone)
	}
	p.responses[token] = resp
	p.mu.Unlock()
	err := writeCommand(p.conn, ctrlCommand{Command: name, Params: params, Token: token})
	p.writeMu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.responses, token)
		p.mu.Unlock()
	}()
	if err != nil {
		return "", err
	}
	select {
	case m, ok := <-resp:
		if !ok {
			return "", fmt.Errorf("%s: %w", name, ErrPhoneGone)
		}
		if !m.OK {
			return "", fmt.Errorf("%s: %q: %w", name, m.Data, ErrCommandFailed)
		}
		return m.Data, nil
	case <-ctx.Done():
		return "", fmt.Errorf("%s: %w", name, ctx.Err())
	}
}

// read dispatches ctrl_tcp messages until the connection ends.
func (p *Phone) read() {
	r := bufio.NewReader(p.conn)
	for {
		b, err := readNetstring(r)
		var m ctrlMessage
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		p.mu.Lock()
		if err != nil {
			p.closed = true
			for _, ch := range p.responses {
				close(ch)
			}
			p.responses = map[string]chan ctrlMessage{}
			close(p.changed)
			p.mu.Unlock()
			return
		}
		switch {
		case m.IsResponse:
			if ch, ok := p.responses[m.Token]; ok {
				ch <- m
				delete(p.responses, m.Token)
			}
		case m.IsEvent:
			p.events = append(p.events, m.Event)
			p.taken = append(p.taken, false)
			close(p.changed)
			p.changed = make(chan struct{})
		}
		p.mu.Unlock()
	}
}

// Await returns the earliest event not yet returned by Await whose type is
// one of types, e.g. Await(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"), waiting
// for it if need be. Events of other types stay available: baresip's order
// varies (a caller may report CALL_RTPESTAB for early media before
// CALL_ESTABLISHED), so awaiting one type never hides another.
func (p *Phone) Await(ctx context.Context, types ...string) (Event, error) {
	for {
		p.mu.Lock()
		for i, e := range p.events {
			if !p.taken[i] && slices.Contains(types, e.Type) {
				p.taken[i] = true
				p.mu.Unlock()
				return e, nil
			}
		}
		changed, closed := p.changed, p.closed
		p.mu.Unlock()
		if closed {
			return Event{}, fmt.Errorf("await %v on %s: %w", types, p.cfg.User, ErrPhoneGone)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("await %v on %s (seen %v): %w", types, p.cfg.User, p.EventTypes(), ctx.Err())
		}
	}
}

// Events is every event the phone reported so far.
func (p *Phone) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// EventTypes is the types of Events, in order: safe to log (no URIs).
func (p *Phone) EventTypes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	types := make([]string, len(p.events))
	for i, e := range p.events {
		types[i] = e.Type
	}
	return types
}

// Saw says whether the phone reported an event of type ty.
func (p *Phone) Saw(ty string) bool {
	for _, e := range p.Events() {
		if e.Type == ty {
			return true
		}
	}
	return false
}

// Heard is the recording of what the phone received in its latest call
// (baresip's sndfile dump-...-dec.wav). Call it after CALL_CLOSED.
func (p *Phone) Heard() string { return p.recording("dec") }

// Said is the recording of what the phone sent in its latest call
// (dump-...-enc.wav).
func (p *Phone) Said() string { return p.recording("enc") }

// Recordings lists every recording in the phone's RecordDir.
func (p *Phone) Recordings() []string {
	files, _ := filepath.Glob(filepath.Join(p.cfg.RecordDir, "dump-*.wav"))
	sort.Strings(files)
	return files
}

func (p *Phone) recording(kind string) string {
	p.t.Helper()
	files, err := filepath.Glob(filepath.Join(p.cfg.RecordDir, "dump-*-"+kind+".wav"))
	if err != nil || len(files) == 0 {
		p.t.Fatalf("pbxlab: phone %s recorded no %s.wav (events %v)", p.cfg.User, kind, p.EventTypes())
	}
	sort.Strings(files) // names carry the call's start time
	return files[len(files)-1]
}

// silence writes length of 8 kHz digital silence, the microphone of a phone
// that has nothing to say.
func silence(t testing.TB, dir string, length time.Duration) string {
	t.Helper()
	out := filepath.Join(dir, "silence.wav")
	secs := strconv.FormatFloat(length.Seconds(), 'f', 3, 64)
	if b, err := exec.Command("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
		out, "trim", "0", secs).CombinedOutput(); err != nil {
		t.Fatalf("pbxlab: silence: sox: %v\n%s", err, b)
	}
	return out
}

// markWriter copies a tool's output to dst and closes seen once mark has
// appeared in it (the tool's "I am ready" line).
type markWriter struct {
	dst  *logsink.Buffer
	mark string
	seen chan struct{}

	mu   sync.Mutex
	done bool
	last string // end of the previous write, for a mark split across writes
}

func (w *markWriter) Write(b []byte) (int, error) {
	n, err := w.dst.Write(b)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		s := w.last + string(b)
		if strings.Contains(s, w.mark) {
			w.done = true
			close(w.seen)
		}
		w.last = s[max(0, len(s)-len(w.mark)):]
	}
	return n, err
}
