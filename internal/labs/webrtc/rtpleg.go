package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

var (
	errNoAudio  = errors.New("SDP has no IPv4 audio")
	errNoRemote = errors.New("no remote address yet")
)

// sdpAudio finds the connection address and audio port of a plain SDP
// offer (c=IN IP4 and m=audio): all a G.711 leg needs.
func sdpAudio(sdp string) (netip.AddrPort, []string, error) {
	c := regexp.MustCompile(`(?m)^c=IN IP4 ([0-9.]+)`).FindStringSubmatch(sdp)
	m := regexp.MustCompile(`(?m)^m=audio (\d+) RTP/AVP ([0-9 ]+)`).FindStringSubmatch(sdp)
	if c == nil || m == nil {
		return netip.AddrPort{}, nil, errNoAudio
	}
	ip, err := netip.ParseAddr(c[1])
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("sdp audio: %w", err)
	}
	port, err := strconv.Atoi(m[1])
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("sdp audio: %w", err)
	}
	return netip.AddrPortFrom(ip, uint16(port)), regexp.MustCompile(`\d+`).FindAllString(m[2], -1), nil
}

// answerSDP is a PCMU-only answer for a leg listening on local.
func answerSDP(local netip.AddrPort) string {
	return fmt.Sprintf("v=0\r\no=node 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
		local.Addr(), local.Addr(), local.Port())
}

// rtpLeg is the node's end of a plain RTP/AVP leg on a UDP socket.
type rtpLeg struct {
	conn *net.UDPConn
	// remote is set by the INVITE handler and read by the senders.
	remote atomic.Pointer[netip.AddrPort]
}

func newRTPLeg() (*rtpLeg, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("rtp leg: %w", err)
	}
	return &rtpLeg{conn: conn}, nil
}

func (l *rtpLeg) local() netip.AddrPort { return l.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// read hands each RTP packet, with its arrival time, to fn until the socket
// closes.
func (l *rtpLeg) read(fn func(p *rtp.Packet, at time.Time)) {
	buf := make([]byte, 1500)
	for {
		n, _, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		at := time.Now()
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			continue // RTCP would land here on an rtcp-mux peer; baresip sends RTCP to port+1
		}
		fn(&p, at)
	}
}

func (l *rtpLeg) write(p *rtp.Packet) error {
	b, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("rtp leg write: %w", err)
	}
	remote := l.remote.Load()
	if remote == nil {
		return fmt.Errorf("rtp leg write: %w", errNoRemote)
	}
	if _, err := l.conn.WriteToUDPAddrPort(b, *remote); err != nil {
		return fmt.Errorf("rtp leg write: %w", err)
	}
	return nil
}

// sendWAVRTP sends an 8 kHz WAV as PCMU RTP on the leg, 20 ms a packet.
func (l *rtpLeg) sendWAVRTP(ctx context.Context, path string, ssrc uint32) error {
	s, rate, err := readWAV(path)
	if err != nil {
		return err
	}
	if rate != 8000 {
		return fmt.Errorf("send wav rtp: %d Hz, want 8000", rate)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: ssrc, Marker: true, SequenceNumber: 1000, Timestamp: 90000}}
	for i := 0; i+160 <= len(s); i += 160 {
		buf := make([]byte, 160)
		for j := range buf {
			buf[j] = ulawEncode(s[i+j])
		}
		p.Payload = buf
		if err := l.write(&p); err != nil {
			return err
		}
		p.Marker = false
		p.SequenceNumber++
		p.Timestamp += 160
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
