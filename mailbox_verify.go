package taskflow

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// checkEarly checks one shard's kept events and claims (mailbox.go): every
// kept-event list is a list with a TTL (else it would never go away) and
// readable entries, a pair's mailbox lives on the pair's rendezvous shard,
// and every claim is readable and has its due entry, and the reverse.
// Problems: wrong_type, early_no_ttl, bad_early_event, early_wrong_shard,
// bad_claim, claim_unindexed, stale_index_entry. Verify does not repair
// them: an expired list goes by itself, and the tick settles claims.
func (s *RedisStore) checkEarly(ctx context.Context, shard int, keys []string) ([]Problem, error) {
	var out []Problem
	tag := s.keys.tag(shard) + ":"
	for _, key := range keys {
		pipe := s.client.Pipeline()
		typ := pipe.Type(ctx, key)
		ttl := pipe.PTTL(ctx, key)
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		switch typ.Val() {
		case "none":
			continue // expired meanwhile
		case "list":
		default:
			out = append(out, Problem{Kind: ProblemWrongType, Key: key, Detail: "key is a " + typ.Val() + ", not a list of kept events"})
			continue
		}
		if ttl.Val() < 0 {
			out = append(out, Problem{Kind: ProblemEarlyNoTtl, Key: key, Detail: "kept events without a TTL never go away"})
		}
		kind, rest, _ := strings.Cut(strings.TrimPrefix(key, tag), ":")
		var flowID string
		if kind == "mbox" && s.keys.rendezvous(rest) != shard {
			out = append(out, Problem{Kind: ProblemEarlyWrongShard, Key: key, Detail: "a pair's mailbox outside its rendezvous shard is never read"})
		}
		if kind == "inbox" {
			id, err := uuid.Parse(rest)
			if err != nil || s.keys.shardOf(id) != shard {
				out = append(out, Problem{Kind: ProblemEarlyWrongShard, Key: key, Detail: "an inbox that names no flow of this shard is never read"})
			} else {
				flowID = " of flow " + id.String()
			}
		}
		entries, err := s.client.LRange(ctx, key, 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		for _, e := range entries {
			ok := false
			if kind == "mbox" {
				_, _, ok = parseMboxEntry(e)
			} else {
				ok = parseInboxEntry(e)
			}
			if !ok {
				out = append(out, Problem{Kind: ProblemBadEarlyEvent, Key: key, Member: e, Detail: "unreadable kept event" + flowID})
			}
		}
	}
	pipe := s.client.TxPipeline() // one slot: a consistent view
	claims := pipe.HGetAll(ctx, s.keys.claims(shard))
	due := pipe.ZRange(ctx, s.keys.claimDue(shard), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return append(out, Problem{Kind: ProblemWrongType, Key: s.keys.claims(shard), Detail: rerr.Error()}), nil
		}
		return nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	indexed := map[string]bool{}
	for _, id := range due.Val() {
		indexed[id] = true
		if _, ok := claims.Val()[id]; !ok {
			out = append(out, Problem{Kind: ProblemStaleIndexEntry, Key: s.keys.claimDue(shard), Member: id, Detail: "due entry of no claim"})
		}
	}
	for id, c := range claims.Val() {
		flow, cp, _, ok := parseClaim(c)
		switch {
		case !ok || s.keys.rendezvous(cp) != shard:
			out = append(out, Problem{Kind: ProblemBadClaim, Key: s.keys.claims(shard), Member: id, Detail: "unreadable claim, or of another shard"})
		case !indexed[id]:
			out = append(out, Problem{Kind: ProblemClaimUnindexed, Key: s.keys.claims(shard), Member: id, Detail: "claim for flow " + flow.String() + " without a due entry is never re-driven"})
		}
	}
	return out, nil
}

// parseInboxEntry checks '<event id> <deadline ms> <n> <corr prefix, n
// bytes><payload>'.
func parseInboxEntry(e string) bool {
	parts := strings.SplitN(e, " ", 4)
	if len(parts) != 4 || parts[0] == "" {
		return false
	}
	if _, err := strconv.ParseInt(parts[1], 10, 64); err != nil {
		return false
	}
	n, err := strconv.Atoi(parts[2])
	return err == nil && n >= 0 && n <= len(parts[3])
}
