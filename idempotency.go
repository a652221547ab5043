package taskflow

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
)

// maxIdempotencyKeyBytes caps CreateManagedInput.IdempotencyKey.
const maxIdempotencyKeyBytes = 1024

// flowSpaceNamespace is the UUID namespace of a flow space's
// idempotency keys: a name-based UUID of its prefix, the same in every
// process that opens the flow space.
func flowSpaceNamespace(prefix string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("taskflow:flow-space:"+prefix))
}

// IdempotentFlowID returns the id a create with idempotency key key gets
// in this flow space: a version 5 (name-based) UUID of the key, in a
// namespace derived from the store's prefix. The same key gives the same
// id in every process; Get(IdempotentFlowID(key)) finds the flow a key
// made.
func (s *RedisStore) IdempotentFlowID(key string) uuid.UUID {
	return uuid.NewSHA1(s.idemSpace, []byte(key))
}

// idempotency returns the flow id and input fingerprint of a create: a
// new random id and no fingerprint without a key.
func (s *RedisStore) idempotency(in CreateManagedInput, mirrored bool, state json.RawMessage) (uuid.UUID, string, error) {
	if in.IdempotencyKey == "" {
		return uuid.New(), "", nil
	}
	if len(in.IdempotencyKey) > maxIdempotencyKeyBytes {
		return uuid.Nil, "", fmt.Errorf("%w: idempotency key is %d bytes, over the limit of %d", ErrInvalidData, len(in.IdempotencyKey), maxIdempotencyKeyBytes)
	}
	mode := string(RuntimeManaged)
	if mirrored {
		mode = string(RuntimeMirrored)
	}
	// A JSON array of strings is an unambiguous encoding of the input.
	canon, err := json.Marshal([]string{mode, in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep, string(state)})
	if err != nil {
		return uuid.Nil, "", fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	sum := sha256.Sum256(canon)
	return s.IdempotentFlowID(in.IdempotencyKey), hex.EncodeToString(sum[:16]), nil
}

// validFingerprint reports whether fp, a flow's 'idem' field, is what
// create.lua stores: 32 lower-case hex digits, on a version 5 id.
func validFingerprint(id uuid.UUID, fp string) bool {
	if id.Version() != 5 || len(fp) != 32 {
		return false
	}
	for _, c := range fp {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
