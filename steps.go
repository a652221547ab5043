package taskflow

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// A flow's steps: recorded by observation, inserted whole (an import),
// listed in order.

// InsertStep stores a new step. The flow must exist (ErrNotFound); a step
// with the same flow and run id is ErrDuplicateStep. A zero ID or
// timestamp is filled in; the step is not added to the audit log.
func (s *RedisStore) InsertStep(ctx context.Context, st *FlowStep) error {
	if st == nil {
		return fmt.Errorf("%w: nil step", ErrInvalidData)
	}
	if st.RunID == "" {
		return fmt.Errorf("%w: run_id is required", ErrInvalidData)
	}
	if err := s.checkStepText(st.RunID, st.Task, st.ChildSessionKey); err != nil {
		return err
	}
	if !st.Runtime.Valid() {
		return fmt.Errorf("%w: unknown step runtime %q", ErrInvalidData, st.Runtime)
	}
	if !st.Status.Valid() {
		return fmt.Errorf("%w: unknown step status %q", ErrInvalidData, st.Status)
	}
	result, err := toJSON("result", st.Result)
	if err != nil {
		return err
	}
	if st.ID == uuid.Nil {
		st.ID = uuid.New()
	}
	now, _, _ := s.clock()
	if st.CreatedAt.IsZero() {
		st.CreatedAt = now
	}
	if st.UpdatedAt.IsZero() {
		st.UpdatedAt = st.CreatedAt
	}
	keys := []string{s.keys.flow(st.FlowID), s.keys.steps(st.FlowID), s.keys.step(st.FlowID, st.RunID)}
	_, err = s.run(ctx, s.scripts.insertStep, st.FlowID, keys,
		st.ID.String(), st.FlowID.String(), string(st.Runtime), st.RunID, st.Task, string(st.Status),
		st.ChildSessionKey, string(result), st.CreatedAt.UnixMilli(), st.UpdatedAt.UnixMilli(), s.limits.StepsPerFlow)
	if err != nil {
		if errors.Is(err, ErrDuplicateStep) {
			return fmt.Errorf("%w: flow %s already has run_id %q", ErrDuplicateStep, st.FlowID, st.RunID)
		}
		return fmt.Errorf("taskflow: insert step: %w", err)
	}
	return nil
}

// recordStep runs record_step.lua.
func (s *RedisStore) recordStep(ctx context.Context, obs StepObservation, mut mutation) (*FlowStep, error) {
	if err := mut.check(); err != nil {
		return nil, err
	}
	if obs.RunID == "" {
		return nil, fmt.Errorf("%w: run_id is required", ErrInvalidData)
	}
	if err := s.checkStepText(obs.RunID, obs.Task, obs.ChildSessionKey); err != nil {
		return nil, err
	}
	if !obs.Status.Valid() {
		return nil, fmt.Errorf("%w: unknown step status %q", ErrInvalidData, obs.Status)
	}
	result, err := toJSON("result", obs.Result)
	if err != nil {
		return nil, err
	}
	if len(result) > s.maxState {
		return nil, fmt.Errorf("%w: result is %d bytes, over the limit of %d", ErrInvalidData, len(result), s.maxState)
	}
	payload, _ := marshalJSON(map[string]string{
		"run_id": obs.RunID, "status": string(obs.Status), "runtime": string(RuntimeMirrored),
	})
	_, nowMs, nowStr := s.clock()
	keys := append(s.keys.flowKeys(obs.FlowID, ""), s.keys.step(obs.FlowID, obs.RunID))
	args := append(s.head(obs.FlowID, nowMs, nowStr, mut),
		obs.RunID, uuid.NewString(), obs.Task, string(obs.Status), obs.ChildSessionKey, string(result),
		string(RuntimeMirrored), string(payload), s.limits.StepsPerFlow)
	v, err := s.run(ctx, s.scripts.recordStep, obs.FlowID, keys, args...)
	if err != nil && !applied(err) {
		return nil, fmt.Errorf("taskflow: record step: %w", err)
	}
	st, derr := decodeStep(v)
	if derr != nil {
		return nil, derr
	}
	if err != nil {
		return st, fmt.Errorf("taskflow: record step: %w", err) // applied, not confirmed replicated
	}
	return st, nil
}

// listSteps returns a flow's steps, oldest first. An unknown flow has none.
func (s *RedisStore) listSteps(ctx context.Context, flowID uuid.UUID) ([]*FlowStep, error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	runIDs, err := s.client.ZRange(ctx, s.keys.steps(flowID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: list steps of %s: %w", flowID, err)
	}
	if len(runIDs) == 0 {
		return []*FlowStep{}, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(runIDs))
	for i, r := range runIDs {
		cmds[i] = pipe.HGetAll(ctx, s.keys.step(flowID, r))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: list steps of %s: %w", flowID, err)
	}
	out := make([]*FlowStep, 0, len(runIDs))
	for _, c := range cmds {
		m := c.Val()
		if len(m) == 0 {
			continue
		}
		fields := make([]any, 0, 2*len(m))
		for k, v := range m {
			fields = append(fields, k, v)
		}
		st, err := decodeStep(fields)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
