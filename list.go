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
	cfg := listConfig{limit: defaultListLimit}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.limit < 1 {
		cfg.limit = defaultListLimit
	}
	if cfg.limit > maxListLimit {
		cfg.limit = maxListLimit
	}
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
	ids := make([]uuid.UUID, 0, len(entries))
	for _, e := range entries {
		if id, err := uuid.Parse(e.id); err == nil {
			ids = append(ids, id)
		}
	}
	flows, err := s.getMany(ctx, ids)
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
