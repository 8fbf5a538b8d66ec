package sip

import (
	"errors"
	"strings"

	"github.com/helpmesh/helpmesh/consensus"
)

// The Request-URI user part is the one piece of a request the ingress reads
// to decide a call; everything else (From, To, Contact, display names) is the
// caller's identity and is never read, logged or counted.
const (
	// queuePrefix starts the user part of a call for the overflow queue: the
	// PBX writes "queue-" and the ISO 639-1 code of the language the caller
	// chose in its menu (Kamailio: $rU = "queue-" + $avp(lang)).
	queuePrefix = "queue-"
	// maxUserLen bounds the user part the parser looks at; a queue user is 8
	// bytes and a token 26, so anything longer is refused unread.
	maxUserLen = 64
	// tokenLen is the length of a token from crypto/rand.Text: 26 base32
	// characters, 130 bits.
	tokenLen = 26
)

// Kind says what a Request-URI user part asks for.
type Kind int

const (
	// KindQueue is a call for the overflow queue of one language.
	KindQueue Kind = iota + 1
	// KindToken is a call for a one-time token another centre's node issued.
	KindToken
)

var (
	// ErrUserTooLong is a Request-URI user part over maxUserLen bytes.
	ErrUserTooLong = errors.New("request-URI user part too long")
	// ErrUnknownUser is a user part that is neither a queue nor a token.
	ErrUnknownUser = errors.New("request-URI user part is neither a queue nor a token")
	// ErrUnknownLanguage is a queue user part whose language is not ISO 639-1.
	ErrUnknownLanguage = errors.New("queue language is not an ISO 639-1 code")
)

// ParseUser reads a Request-URI user part: "queue-nb" is the queue for
// Norwegian Bokmål (value "nb"); 26 base32 characters are a token (value in
// upper case, the form Issue returns, so a PBX that folds case still
// matches). Anything else is an error.
func ParseUser(user string) (Kind, string, error) {
	if len(user) > maxUserLen {
		return 0, "", ErrUserTooLong
	}
	if lang, ok := strings.CutPrefix(user, queuePrefix); ok {
		if !consensus.KnownLanguage(lang) {
			return 0, "", ErrUnknownLanguage
		}
		return KindQueue, lang, nil
	}
	if len(user) != tokenLen {
		return 0, "", ErrUnknownUser
	}
	tok := []byte(user)
	for i, c := range tok {
		switch {
		case c >= 'a' && c <= 'z':
			tok[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '2' && c <= '7':
		default:
			return 0, "", ErrUnknownUser
		}
	}
	return KindToken, string(tok), nil
}
