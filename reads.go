package taskflow

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

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
	now, _ := s.clock()
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
	_, nowMs := s.clock()
	keys := append(s.keys.flowKeys(obs.FlowID, ""), s.keys.step(obs.FlowID, obs.RunID))
	args := append(s.head(obs.FlowID, nowMs, mut),
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

// Limits of a list page.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// ListOption adjusts a list call.
type ListOption func(*listConfig)

type listConfig struct {
	limit  int
	cursor string
}

// listSettings applies opts (nil ones are skipped) to the defaults and
// bounds the limit: below 1 means defaultListLimit, above maxListLimit is
// maxListLimit.
func listSettings(opts []ListOption) listConfig {
	cfg := listConfig{limit: defaultListLimit}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.limit < 1 {
		cfg.limit = defaultListLimit
	}
	cfg.limit = min(cfg.limit, maxListLimit)
	return cfg
}

// WithLimit sets the page size (default 100, at most 1000; values below 1
// mean the default).
func WithLimit(n int) ListOption {
	return func(c *listConfig) { c.limit = n }
}

// WithCursor continues a listing after the page that returned cursor
// (FlowPage.Next). An empty cursor starts at the beginning.
func WithCursor(cursor string) ListOption {
	return func(c *listConfig) { c.cursor = cursor }
}

// FlowPage is one page of a listing.
type FlowPage struct {
	Flows []*Flow
	// Next is the cursor of the following page, "" after the last one.
	Next string
}

// indexEntry is one member of a sorted-set index with its score.
type indexEntry struct {
	score int64
	id    string
}

// before reports whether a sorts before b in the listing's direction.
func (a indexEntry) before(b indexEntry, desc bool) bool {
	if a.score != b.score {
		return (a.score < b.score) != desc
	}
	if a.id == b.id {
		return false
	}
	return (a.id < b.id) != desc
}

// entryIDs is the flow ids of entries, in order; a member that is not a
// flow id (a hand edit) is left out.
func entryIDs(entries []indexEntry) []uuid.UUID {
	ids := make([]uuid.UUID, 0, len(entries))
	for _, e := range entries {
		if id, err := uuid.Parse(e.id); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func (a indexEntry) cursor() string { return strconv.FormatInt(a.score, 10) + ":" + a.id }

func parseCursor(c string) (indexEntry, error) {
	s, id, ok := strings.Cut(c, ":")
	score, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil {
		return indexEntry{}, fmt.Errorf("%w: malformed list cursor %q", ErrInvalidData, c)
	}
	return indexEntry{score: score, id: id}, nil
}

// listIndex pages through an index split over keys (one per shard, or
// several): it reads at most limit+1 entries after the cursor from every
// key in one pipeline, merges them, and reads the flows of the first
// limit. Entries whose flow vanished meanwhile are skipped. The cost is
// O(keys × limit), whatever the size of the index.
func (s *RedisStore) listIndex(ctx context.Context, keys []string, desc bool, opts []ListOption) (*FlowPage, error) {
	cfg := listSettings(opts)
	var after *indexEntry
	if cfg.cursor != "" {
		c, err := parseCursor(cfg.cursor)
		if err != nil {
			return nil, err
		}
		after = &c
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	entries, err := s.readShards(ctx, keys, desc, after, cfg.limit)
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].before(entries[j], desc) })
	page := &FlowPage{Flows: []*Flow{}}
	more := len(entries) > cfg.limit
	if more {
		entries = entries[:cfg.limit]
	}
	flows, err := s.getMany(ctx, entryIDs(entries))
	if err != nil {
		return nil, err
	}
	page.Flows = flows
	if more && len(entries) > 0 {
		page.Next = entries[len(entries)-1].cursor()
	}
	return page, nil
}

// readShards returns, from every key, up to limit+1 entries strictly
// after the cursor, so the caller can tell whether a next page exists.
// Without a cursor it reads each key's head; with one, page_after.lua
// finds the position by binary search. One pipeline either way.
func (s *RedisStore) readShards(ctx context.Context, keys []string, desc bool, after *indexEntry, limit int) ([]indexEntry, error) {
	want := int64(limit + 1)
	var all []indexEntry
	if after == nil {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.ZSliceCmd, len(keys))
		for i, k := range keys {
			if desc {
				cmds[i] = pipe.ZRevRangeWithScores(ctx, k, 0, want-1)
			} else {
				cmds[i] = pipe.ZRangeWithScores(ctx, k, 0, want-1)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("taskflow: list: %w", err)
		}
		for _, c := range cmds {
			for _, z := range c.Val() {
				m, _ := z.Member.(string)
				all = append(all, indexEntry{score: int64(z.Score), id: m})
			}
		}
		return all, nil
	}
	order := "asc"
	if desc {
		order = "desc"
	}
	calls := make([]scriptCall, len(keys))
	for i, k := range keys {
		calls[i] = scriptCall{s.scripts.pageAfter, []string{k}, []any{after.score, after.id, want, order}}
	}
	vals, errs := s.runPipelined(ctx, calls)
	for i := range calls {
		if errs[i] != nil {
			return nil, fmt.Errorf("taskflow: list: %w", errs[i])
		}
		flat, _ := vals[i].([]any)
		for j := 0; j+1 < len(flat); j += 2 {
			m, _ := flat[j].(string)
			sc, _ := flat[j+1].(string)
			score, err := strconv.ParseFloat(sc, 64)
			if err != nil {
				return nil, fmt.Errorf("taskflow: list: bad score %q", sc)
			}
			all = append(all, indexEntry{score: int64(score), id: m})
		}
	}
	return all, nil
}

// listAllOrPage returns the page opts describe when there are options,
// and otherwise every flow of the listing, following the cursors with
// pages of maxListLimit. A flow that changes index meanwhile may be
// missed or seen twice, as with any paged reading; it is returned once.
func listAllOrPage(ctx context.Context, opts []ListOption, page func(...ListOption) (*FlowPage, error)) ([]*Flow, error) {
	if len(opts) > 0 {
		p, err := page(opts...)
		if err != nil {
			return nil, err
		}
		return p.Flows, nil
	}
	out := []*Flow{}
	seen := map[uuid.UUID]bool{}
	cursor := ""
	for {
		p, err := page(WithLimit(maxListLimit), WithCursor(cursor))
		if err != nil {
			return nil, err
		}
		for _, f := range p.Flows {
			if !seen[f.ID] {
				seen[f.ID] = true
				out = append(out, f)
			}
		}
		if p.Next == "" {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cursor = p.Next
	}
}

// countIndex sums the sizes of one index over the shards, in one pipeline.
func (s *RedisStore) countIndex(ctx context.Context, keyOf func(int) string) (int, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, s.keys.shards)
	for i := range cmds {
		cmds[i] = pipe.ZCard(ctx, keyOf(i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("taskflow: count: %w", err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}
