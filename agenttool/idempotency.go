package agenttool

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/taskflow-dev/taskflow"
)

// MaxIdempotencyKeyBytes caps the tool's idempotency_key argument.
const MaxIdempotencyKeyBytes = 256

// toolIdempotencyKey scopes a start's idempotency_key to the calling
// session, the tool's tenant: the same key from two sessions names two
// flows, never one. The owner key is length-prefixed so no choice of
// owner and key can spell another pair.
func toolIdempotencyKey(s Session, key string) (string, error) {
	if len(key) > MaxIdempotencyKeyBytes {
		return "", argErr("\"idempotency_key\" is %d bytes; at most %d", len(key), MaxIdempotencyKeyBytes)
	}
	owner := s.OwnerKey()
	return "tool:" + strconv.Itoa(len(owner)) + ":" + owner + ":" + key, nil
}

// idempotencyConflict explains a start refused for reusing a key.
func idempotencyConflict(s Session, key string, err error) error {
	if !errors.Is(err, taskflow.ErrIdempotencyConflict) {
		return nil
	}
	return fmt.Errorf("%w: idempotency_key %q already started a flow with other arguments in this session; use a new key for a new job, or list_mine to find that flow (%w)",
		ErrArgs, key, taskflow.ErrIdempotencyConflict)
}
