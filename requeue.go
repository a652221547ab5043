package taskflow

import (
	"context"
	"errors"

	"github.com/google/uuid"
)

// RequeueExpiredLease ends a lease whose expiry has passed and puts its
// running flow back on its controller's ready queue, as the engine's next
// tick would: an operator's way to hand a stalled worker's flow on now. It
// returns the flow as persisted, or nil when there is nothing to do (no
// lease, or a lease that has not expired yet: a live worker's lease is
// never taken away). The audit log gets a lease_expired event.
func (m *Manager) RequeueExpiredLease(ctx context.Context, flowID uuid.UUID) (*Flow, error) {
	s := m.store
	_, nowMs, nowStr := s.clock()
	f, _, err := s.runFlowScript(ctx, s.scripts.expireLease, flowID, s.keys.flowKeys(flowID, ""),
		s.head(flowID, nowMs, nowStr, mutation{}))
	if errors.Is(err, errNoMatch) {
		return nil, nil
	}
	return f, err
}
