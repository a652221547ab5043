package taskflow

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// scripts holds every compiled script of a store.
type scripts struct {
	create, transition, updateState, requestCancel, writeFlow *redis.Script
	recordStep, insertStep, pruneFlow                         *redis.Script
	verifyFlow, reindexFlow, deleteOrphans                    *redis.Script
	claim, extendLease, releaseLease, expireLease             *redis.Script
	pageAfter, tickCancel, verifyEntry, indexStep             *redis.Script
	retry                                                     *redis.Script
	insertFlow, appendEventAt, getStep, findStep, updateStep  *redis.Script // import_store.go
	deliverEvent, mboxKeep, mboxTake, mboxSettle              *redis.Script
	// transitionEarly is transition.lua with early_lib.lua, for a wait on
	// an external event (the mailbox's helpers cost every call about
	// 6 µs of server time, so the other transitions go without).
	transitionEarly *redis.Script
	all             []*redis.Script
	// names names the mutation scripts, for the observer.
	names map[*redis.Script]string
}

// luaPrelude renders the state machine for the scripts: which index key
// each status uses, which statuses are terminal, and ALLOWED[to][from].
func luaPrelude(cluster bool) string {
	var b strings.Builder
	b.WriteString("-- generated from taskflow.go: do not edit\n")
	// Sharded pub/sub keeps a Cluster's messages on the slot's node.
	if cluster {
		b.WriteString("local PUBLISH = 'SPUBLISH'\n")
	} else {
		b.WriteString("local PUBLISH = 'PUBLISH'\n")
	}
	b.WriteString("local STATUS_KEY = {")
	for i, st := range allStatuses {
		fmt.Fprintf(&b, "[%q]=%d,", st, 4+i)
	}
	b.WriteString("}\nlocal TERMINAL = {")
	for _, st := range allStatuses {
		if st.IsTerminal() {
			fmt.Fprintf(&b, "[%q]=true,", st)
		}
	}
	b.WriteString("}\nlocal ALLOWED = {")
	for _, to := range allStatuses {
		fmt.Fprintf(&b, "[%q]={", to)
		for _, from := range sourcesOf(to) {
			fmt.Fprintf(&b, "[%q]=true,", from)
		}
		b.WriteString("},")
	}
	b.WriteString("}\n")
	return b.String()
}

func loadScripts(cluster bool) (*scripts, error) {
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		return nil, err
	}
	early, err := luaFiles.ReadFile("lua/early_lib.lua")
	if err != nil {
		return nil, err
	}
	head := luaPrelude(cluster) + string(lib) + "\n"
	s := &scripts{names: map[*redis.Script]string{}}
	for _, x := range []struct {
		name string
		dst  **redis.Script
	}{
		{"create", &s.create},
		{"transition", &s.transition},
		{"update_state", &s.updateState},
		{"request_cancel", &s.requestCancel},
		{"write_flow", &s.writeFlow},
		{"record_step", &s.recordStep},
		{"insert_step", &s.insertStep},
		{"prune_flow", &s.pruneFlow},
		{"verify_flow", &s.verifyFlow},
		{"reindex_flow", &s.reindexFlow},
		{"delete_orphans", &s.deleteOrphans},
		{"claim", &s.claim},
		{"extend_lease", &s.extendLease},
		{"release_lease", &s.releaseLease},
		{"expire_lease", &s.expireLease},
		{"page_after", &s.pageAfter},
		{"tick_cancel", &s.tickCancel},
		{"verify_entry", &s.verifyEntry},
		{"index_step", &s.indexStep},
		{"retry", &s.retry},
		{"transition_early", &s.transitionEarly},
		{"deliver_event", &s.deliverEvent},
		{"mbox_keep", &s.mboxKeep},
		{"mbox_take", &s.mboxTake},
		{"mbox_settle", &s.mboxSettle},
		{"insert_flow", &s.insertFlow},
		{"append_event_at", &s.appendEventAt},
		{"get_step", &s.getStep},
		{"find_step", &s.findStep},
		{"update_step", &s.updateStep},
	} {
		file := x.name
		if file == "transition_early" {
			file = "transition"
		}
		body, err := luaFiles.ReadFile("lua/" + file + ".lua")
		if err != nil {
			return nil, err
		}
		src := head
		switch x.name {
		case "transition_early", "deliver_event":
			src += string(early) + "\n" // the mailbox's helpers
		case "mbox_keep", "mbox_take", "mbox_settle":
			src = "" // the mailbox's own keys, not a flow's
		}
		*x.dst = redis.NewScript(src + "-- " + x.name + ".lua\n" + string(body))
		s.all = append(s.all, *x.dst)
		if x.name != "page_after" && x.name != "verify_flow" { // reads
			s.names[*x.dst] = x.name
		}
	}
	return s, nil
}

// scriptError maps a script's refusal code to a typed error.
func scriptError(err error, id uuid.UUID) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err
	}
	msg := rerr.Error()
	// Redis 7 and miniredis prefix error_reply texts with "ERR ".
	code, detail, _ := strings.Cut(strings.TrimPrefix(msg, "ERR "), " ")
	switch code {
	case "NOTFOUND":
		return fmt.Errorf("%w: flow %s", ErrNotFound, id)
	case "NOMATCH":
		return errNoMatch
	case "STALE":
		return errStaleEntry
	case "BADWAIT":
		return fmt.Errorf("%w: flow %s has a timer entry but its wait is not a timer", ErrInvalidData, id)
	case "REVISION":
		var exp, act int64
		_, _ = fmt.Sscanf(detail, "%d %d", &exp, &act)
		return &RevisionMismatchError{FlowID: id, Expected: exp, Actual: act}
	case "TERMINAL":
		return &TransitionError{FlowID: id, From: FlowStatus(detail), Err: ErrAlreadyTerminal}
	case "CANCELPENDING":
		return &TransitionError{FlowID: id, From: FlowStatus(detail), Err: ErrCancelPending}
	case "ILLEGAL":
		return &TransitionError{FlowID: id, From: FlowStatus(detail), Err: ErrIllegalTransition}
	case "TOOLARGE":
		return fmt.Errorf("%w: %w: the state of flow %s would be %s bytes, over the limit", ErrInvalidData, ErrStateTooLarge, id, detail)
	case "TOOMANYSTEPS":
		return fmt.Errorf("%w: flow %s holds %s steps, the most a flow may hold (MaxStepsPerFlow)", ErrInvalidData, id, detail)
	case "DUPSTEP":
		return fmt.Errorf("%w: flow %s", ErrDuplicateStep, id)
	case "IMMUTABLE":
		return fmt.Errorf("%w: %s of flow %s cannot change", ErrInvalidData, detail, id)
	case "LEASELOST":
		return fmt.Errorf("%w: flow %s", ErrLeaseLost, id)
	case "ATTEMPTS":
		n, _ := strconv.Atoi(detail)
		return &attemptsMoved{actual: n}
	case "IDEMCONFLICT":
		return ErrIdempotencyConflict
	case "EXISTS":
		return fmt.Errorf("%w: flow %s", ErrAlreadyExists, id)
	}
	return err
}

// errNoMatch is a guard that did not hold: the caller turns it into a no-op.
var errNoMatch = errors.New("taskflow: no match")

// isNoScript reports a NOSCRIPT reply (the server lost its script cache).
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// loadAll loads every script, on every master of a cluster.
func (s *scripts) loadAll(ctx context.Context, c redis.UniversalClient) error {
	for _, sc := range s.all {
		if err := sc.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("taskflow: loading scripts: %w", err)
		}
	}
	return nil
}
