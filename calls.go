package taskflow

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
)

// maxCallIDBytes is the longest call id WithCallID accepts.
const maxCallIDBytes = 64

// callMemory is how many of a flow's most recent mutating calls the flow
// remembers (by call id) so that a call re-sent after its reply was lost
// applies once; resume-bridge messages have a memory of their own. A
// memory is one hash field of at most 64 bytes (a longer value would
// turn the flow hash from a listpack into a hashtable): it keeps up to
// callMemory library-generated ids, fewer long ones (WithCallID, bridge
// message ids: about 3), always at least the newest.
const callMemory = 6

// WithCallID names one logical call, so that running it again applies
// once: a repeat of a call the flow still remembers writes nothing and
// answers as the first run did (the flow as persisted now;
// UpdateAndAppend also the first run's event). A flow remembers its 6
// most recent mutating calls with library-generated ids, fewer with long
// ids (about 3 of 64 bytes), always at least the newest. Use it to retry a mutation whose outcome you did not learn
// (a timeout, a crash between the call and its record): pass the same id
// on every attempt of that call, and a new id for a new call. Without it
// each call gets a random id, which makes go-redis's own re-sends (after
// a dropped connection or a read timeout) harmless. The id must be 1 to
// 64 bytes of printable ASCII without spaces, ':' or a leading '~'; an
// invalid id makes the mutation fail with ErrInvalidData.
func WithCallID(id string) MutationOption {
	return func(m *mutation) { m.call = id; m.callSet = true }
}

// validCallID checks a caller's call id.
func validCallID(id string) error {
	if id == "" || len(id) > maxCallIDBytes || strings.HasPrefix(id, "~") {
		return fmt.Errorf("%w: call id %q must be 1 to %d bytes and not start with '~'", ErrInvalidData, id, maxCallIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("%w: call id %q holds a space, ':' or a non-printable byte", ErrInvalidData, id)
		}
	}
	return nil
}

// newCallID returns a random call id: 48 bits in 8 characters. It only
// has to differ from the callMemory calls a flow remembers (a chance of
// about 3e-14 per call that it does not), and every byte is kept in
// each flow's ring.
func newCallID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return base64.RawURLEncoding.EncodeToString(b[:6])
}

// bridgeCallID is the call id of a resume-bridge message: remembered
// apart from other calls, so its redelivery is recognised however many
// calls the flow saw meanwhile.
func bridgeCallID(msgID string) string { return "~" + msgID }

// check refuses a mutation whose options are invalid.
func (m mutation) check() error {
	if m.callSet && !m.internal {
		return validCallID(m.call)
	}
	return nil
}
