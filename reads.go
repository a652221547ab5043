package taskflow

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Reading flows and their audit logs.

// get returns the flow with id, or an error wrapping ErrNotFound. It is
// one HGETALL: the record and the state live in one hash.
func (s *RedisStore) get(ctx context.Context, id uuid.UUID) (*Flow, error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	m, err := s.client.HGetAll(ctx, s.keys.flow(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: get flow %s: %w", id, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: flow %s", ErrNotFound, id)
	}
	return decodeFlow(id, m, true)
}

// getMany reads flows in one pipeline; missing ones are skipped.
func (s *RedisStore) getMany(ctx context.Context, ids []uuid.UUID) ([]*Flow, error) {
	if len(ids) == 0 {
		return []*Flow{}, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.keys.flow(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: get flows: %w", err)
	}
	out := make([]*Flow, 0, len(ids))
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		f, err := decodeFlow(ids[i], c.Val(), true)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// listEvents returns up to limit of a flow's events, newest first. A limit
// of zero or less returns none; an unknown flow has none.
func (s *RedisStore) listEvents(ctx context.Context, flowID uuid.UUID, limit int) ([]*FlowEvent, error) {
	if limit <= 0 {
		return []*FlowEvent{}, nil
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	// The newest entry's id is the flow's seq: read both at once.
	var seqCmd *redis.StringCmd
	var listCmd *redis.StringSliceCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		seqCmd = p.HGet(ctx, s.keys.flow(flowID), "seq")
		listCmd = p.LRange(ctx, s.keys.events(flowID), 0, int64(limit)-1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: list events of %s: %w", flowID, err)
	}
	entries := listCmd.Val()
	newest, _ := strconv.ParseInt(seqCmd.Val(), 10, 64)
	out := make([]*FlowEvent, 0, len(entries))
	for i, e := range entries {
		ev, err := decodeEvent(flowID, newest-int64(i), e)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
