package media

import "errors"

// The engine's errors (ErrBadSDP, ErrNoAudio and ErrNoCodec are in sdp.go;
// Bridge returns the first and the last too).
var (
	// ErrBridged is a second Bridge on a leg that already has a browser.
	ErrBridged = errors.New("leg already bridged")
	// ErrBadPrompt is a prompt file that is not an 8 kHz mono 16-bit PCM
	// WAV, or is too large.
	ErrBadPrompt = errors.New("bad prompt")
	// ErrClosed is an operation on a closed leg or engine.
	ErrClosed = errors.New("media closed")
	// ErrAddressFamily is a caller whose RTP address is not of Config.Host's
	// family (IPv4 against IPv6): the leg could not reach it (488).
	ErrAddressFamily = errors.New("caller's address family differs from the node's")
	// ErrNoPort is a port range with every port taken.
	ErrNoPort = errors.New("no free RTP port")
)
