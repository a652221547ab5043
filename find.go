package taskflow

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Finding flows: search attributes (a few name=value labels a flow
// carries, each indexed) and Find, the list that combines status,
// controller, owner and one attribute.
//
// The indexes Find reads, in each flow's shard (lua/include/attrs.lua
// keeps them with every create, SetAttributes and prune):
//
//	<prefix>:{<n>}:ctl:<controller>      zset: every flow of the controller, by creation ms
//	<prefix>:{<n>}:attr:<name>=<value>   zset: flows with that attribute, by creation ms
//
// and the owner and status indexes (keys.go).

// Bounds of a flow's search attributes.
const (
	maxAttributes     = 8
	maxAttrNameBytes  = 64
	maxAttrValueBytes = 256
)

// attrFieldPrefix starts an attribute's field in the flow hash: no record
// field starts with it, and the state's fields start with "$".
const attrFieldPrefix = "@"

// checkAttrName refuses a name outside 1..64 bytes of [a-z0-9_.-].
func checkAttrName(name string) error {
	if name == "" || len(name) > maxAttrNameBytes {
		return fmt.Errorf("%w: attribute name %q must be 1 to %d bytes", ErrInvalidData, name, maxAttrNameBytes)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '.' && c != '-' {
			return fmt.Errorf("%w: attribute name %q may hold only a-z, 0-9, '_', '.' and '-'", ErrInvalidData, name)
		}
	}
	return nil
}

// checkAttrValue refuses a value outside 1..256 bytes of UTF-8 without
// control characters.
func checkAttrValue(name, v string) error {
	if v == "" || len(v) > maxAttrValueBytes {
		return fmt.Errorf("%w: attribute %q: the value must be 1 to %d bytes, not %d", ErrInvalidData, name, maxAttrValueBytes, len(v))
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: attribute %q: the value is not valid UTF-8", ErrInvalidData, name)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: attribute %q: the value holds a control character", ErrInvalidData, name)
		}
	}
	return nil
}

// attrArgs checks attrs and renders them for a script: the count, then
// name, value pairs in name order.
func attrArgs(attrs map[string]string) ([]any, error) {
	if len(attrs) > maxAttributes {
		return nil, fmt.Errorf("%w: %d attributes, at most %d", ErrInvalidData, len(attrs), maxAttributes)
	}
	names := sortedNames(attrs)
	args := make([]any, 0, 1+2*len(names))
	args = append(args, len(names))
	for _, n := range names {
		if err := checkAttrName(n); err != nil {
			return nil, err
		}
		if err := checkAttrValue(n, attrs[n]); err != nil {
			return nil, err
		}
		args = append(args, n, attrs[n])
	}
	return args, nil
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SetAttributes sets the search attributes in set (name to value) and
// removes those named in remove, in one mutation: the flow moves between
// the attributes' indexes atomically with its record, its revision goes
// up by one and an attributes_set event records what changed
// ({"set":{name:value,…},"removed":[name,…]}). A call that changes
// nothing (every value already so, every removed name absent) writes
// nothing and returns the flow. Names and values follow
// CreateManagedInput.Attributes's rules; a name both set and removed, a
// flow that would hold more than 8 attributes, or an invalid name or
// value is ErrInvalidData and writes nothing. A terminal flow refuses
// with ErrAlreadyTerminal (a *TransitionError); a cancel-requested one
// accepts, so an operator can still label it. Unknown flows are
// ErrNotFound. It takes IfRevision, IfRevisionOf, WithLease, WithCallID
// (a re-sent call applies once) and WithoutState like any mutation.
func (m *Manager) SetAttributes(ctx context.Context, id uuid.UUID, set map[string]string, remove []string, opts ...MutationOption) (*Flow, error) {
	return m.store.setAttributes(ctx, id, set, remove, applyMutationOptions(opts))
}

// setAttributes runs set_attributes.lua.
func (s *RedisStore) setAttributes(ctx context.Context, id uuid.UUID, set map[string]string, remove []string, mut mutation) (*Flow, error) {
	if err := mut.check(); err != nil {
		return nil, err
	}
	if len(set)+len(remove) > 2*maxAttributes {
		return nil, fmt.Errorf("%w: %d attributes to set and %d to remove, at most %d in all", ErrInvalidData, len(set), len(remove), 2*maxAttributes)
	}
	setArgs, err := attrArgs(set)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(remove))
	var gone []any
	for _, n := range remove {
		if err := checkAttrName(n); err != nil {
			return nil, err
		}
		if _, ok := set[n]; ok {
			return nil, fmt.Errorf("%w: attribute %q is both set and removed", ErrInvalidData, n)
		}
		if !seen[n] {
			seen[n] = true
			gone = append(gone, n)
		}
	}
	_, nowMs := s.clock()
	args := append(s.head(id, nowMs, mut), maxAttributes)
	args = append(args, setArgs...)
	args = append(args, gone...)
	f, _, err := s.runFlowScript(ctx, s.scripts.setAttributes, id, s.keys.flowKeys(id, ""), args)
	return f, err
}

// Filter selects the flows Find lists: those matching every field that
// is set. At least one field is required.
type Filter struct {
	// Status, when set, keeps flows in that status.
	Status FlowStatus
	// Controller, when set, keeps flows of that controller id.
	Controller string
	// Owner, when set, keeps flows of that owner session key.
	Owner string
	// Attribute, when set, is "name=value": it keeps flows whose search
	// attribute name has exactly that value (the name is the text before
	// the first '=', and never holds one).
	Attribute string
}

// attribute splits Filter.Attribute into its name and value.
func (f Filter) attribute() (name, value string, err error) {
	name, value, ok := strings.Cut(f.Attribute, "=")
	if !ok {
		return "", "", fmt.Errorf("%w: filter attribute %q is not name=value", ErrInvalidData, f.Attribute)
	}
	if err := checkAttrName(name); err != nil {
		return "", "", err
	}
	if err := checkAttrValue(name, value); err != nil {
		return "", "", err
	}
	return name, value, nil
}

// matches reports whether fl passes the filter (attribute: name, value).
func (f Filter) matches(fl *Flow, name, value string) bool {
	if f.Status != "" && fl.Status != f.Status {
		return false
	}
	if f.Controller != "" && fl.ControllerID != f.Controller {
		return false
	}
	if f.Owner != "" && fl.OwnerSessionKey != f.Owner {
		return false
	}
	if name != "" {
		if v, ok := fl.Attributes[name]; !ok || v != value {
			return false
		}
	}
	return true
}

// findScanBudget is how many index entries one Find call scans per shard
// at least (twice the page size when that is more): the bound on a
// page's cost whatever the flow space holds.
const findScanBudget = 200

// findRounds is how many pipelined rounds of scans one Find call makes at
// most: the first usually completes the page.
const findRounds = 3

// Find lists the flows matching filter, newest first: by creation time
// (then id, for flows created in the same millisecond) when the filter
// names an attribute, a controller or an owner, and by the time they
// entered their status when it names only a status. It reads the most
// selective index the filter names (attribute, then controller, then
// owner, then status) in every shard, and checks the rest of the filter
// on each flow's record inside Redis, scanning at most 200 entries (or
// twice the page size) per shard per call, in one to three pipelined
// rounds (each shard first scans for about twice its share of the page,
// then further only when the page is not yet complete): a page costs the same
// whatever the flow space holds, but may hold fewer flows than the limit,
// even none, when few of the scanned flows match. Follow FlowPage.Next
// until it is "": a page with a Next may be followed by more flows.
//
// WithLimit sets the page size (default 100, at most 1000), WithCursor
// continues after a page (a cursor is only meaningful with the filter
// that made it). A flow that matches the filter for the whole listing is
// returned exactly once, however flows are created, move or are pruned
// meanwhile; one that starts or stops matching during it may or may not
// be. A filter with no field, an unknown status or a malformed attribute
// is ErrInvalidData. Flows created before controllers were indexed are
// listed by controller once Verify with fsck.WithRepair rebuilt their
// entries (it reports them as fsck.FindIndexMissing).
func (m *Manager) Find(ctx context.Context, filter Filter, opts ...ListOption) (*FlowPage, error) {
	return m.store.find(ctx, filter, opts)
}

// findShard is what one Find call learnt of a shard's index from
// find_page.lua, over its rounds.
type findShard struct {
	matches []indexEntry
	last    *indexEntry // the last entry scanned, nil for none
	done    bool        // the scan reached the index's end
	scanned int         // entries scanned
}

// find is Manager.Find on the store.
func (s *RedisStore) find(ctx context.Context, filter Filter, opts []ListOption) (*FlowPage, error) {
	var name, value string
	if filter.Attribute != "" {
		var err error
		if name, value, err = filter.attribute(); err != nil {
			return nil, err
		}
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, filter.Status)
	}
	// rest is what the index read does not imply: the scan compares it
	// on each flow's record.
	var keyOf func(shard int) string
	rest, field := filter, ""
	switch {
	case name != "":
		keyOf = func(shard int) string { return s.keys.attr(shard, name, value) }
		rest.Attribute = ""
	case filter.Controller != "":
		keyOf = func(shard int) string { return s.keys.controllerIndex(shard, filter.Controller) }
		rest.Controller = ""
	case filter.Owner != "":
		keyOf = func(shard int) string { return s.keys.owner(shard, filter.Owner) }
		rest.Owner = ""
	case filter.Status != "":
		keyOf = func(shard int) string { return s.keys.status(shard, filter.Status) }
		rest.Status = ""
	default:
		return nil, fmt.Errorf("%w: a filter needs a status, a controller, an owner or an attribute", ErrInvalidData)
	}
	cfg := listSettings(opts)
	curScore, curID := "", ""
	if cfg.cursor != "" {
		c, err := parseCursor(cfg.cursor)
		if err != nil {
			return nil, err
		}
		curScore, curID = strconv.FormatInt(c.score, 10), c.id
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	if rest.Attribute != "" {
		field = attrFieldPrefix + name
	}
	// Each shard's scan resumes where its previous round stopped; the
	// first round asks each for a fair share of the page and twice that
	// again, later rounds for more, until the page is known complete,
	// every shard is done or out of budget, or findRounds rounds ran.
	budget := max(findScanBudget, 2*cfg.limit)
	want := min(cfg.limit, 2*((cfg.limit+s.keys.shards-1)/s.keys.shards)+2)
	shards := make([]findShard, s.keys.shards)
	for round := 0; round < findRounds; round++ {
		var calls []scriptCall
		var which []int
		for shard := range shards {
			sh := &shards[shard]
			if sh.done || sh.scanned >= budget {
				continue
			}
			from, fromID := curScore, curID
			if sh.last != nil {
				from, fromID = strconv.FormatInt(sh.last.score, 10), sh.last.id
			}
			calls = append(calls, scriptCall{s.scripts.findPage, []string{keyOf(shard), s.keys.tag(shard) + ":flow:"}, []any{
				from, fromID, "desc", budget - sh.scanned, want,
				string(rest.Status), rest.Controller, rest.Owner, field, value,
			}})
			which = append(which, shard)
		}
		if len(calls) == 0 {
			break
		}
		vals, errs := s.runPipelined(ctx, calls)
		for i, shard := range which {
			if errs[i] != nil {
				return nil, fmt.Errorf("taskflow: find: %w", errs[i])
			}
			if err := shards[shard].add(vals[i]); err != nil {
				return nil, fmt.Errorf("taskflow: find: %w", err)
			}
		}
		if entries, _ := mergeFindShards(shards, cfg.limit); len(entries) >= cfg.limit {
			break
		}
		want = min(cfg.limit, 2*want)
	}
	entries, next := mergeFindShards(shards, cfg.limit)
	flows, err := s.getMany(ctx, entryIDs(entries))
	if err != nil {
		return nil, err
	}
	// A flow that changed between the scan and the read no longer
	// matched for the whole listing: it may be left out.
	page := &FlowPage{Flows: make([]*Flow, 0, len(flows)), Next: next}
	for _, fl := range flows {
		if filter.matches(fl, name, value) {
			page.Flows = append(page.Flows, fl)
		}
	}
	return page, nil
}

// mergeFindShards orders the shards' matches newest first and returns
// the page's entries and its cursor. Every shard has scanned its index
// down to its last entry (or to its end): the matches older than the
// newest of those last entries (the frontier) are not known complete
// yet, so the page stops there and its cursor resumes there.
func mergeFindShards(shards []findShard, limit int) ([]indexEntry, string) {
	var frontier *indexEntry
	for _, sh := range shards {
		if sh.done || sh.last == nil {
			continue
		}
		if frontier == nil || sh.last.before(*frontier, true) {
			frontier = sh.last
		}
	}
	var all []indexEntry
	for _, sh := range shards {
		for _, e := range sh.matches {
			if frontier == nil || !frontier.before(e, true) {
				all = append(all, e)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].before(all[j], true) })
	if len(all) > limit {
		return all[:limit], all[limit-1].cursor()
	}
	if frontier != nil {
		return all, frontier.cursor()
	}
	return all, ""
}

// add records one find_page.lua reply: its matches, where it stopped.
func (sh *findShard) add(v any) error {
	arr, ok := v.([]any)
	if !ok || len(arr) != 5 {
		return fmt.Errorf("unexpected reply %T", v)
	}
	flat, _ := arr[0].([]any)
	for j := 0; j+1 < len(flat); j += 2 {
		m, _ := flat[j].(string)
		e, err := entryOf(m, flat[j+1])
		if err != nil {
			return err
		}
		sh.matches = append(sh.matches, e)
	}
	if m, _ := arr[1].(string); m != "" {
		e, err := entryOf(m, arr[2])
		if err != nil {
			return err
		}
		sh.last = &e
	}
	done, _ := arr[3].(int64)
	sh.done = done == 1
	n, _ := arr[4].(int64)
	sh.scanned += int(n)
	return nil
}

// entryOf builds an index entry from a member and its score as a script
// returns it (a string).
func entryOf(member string, score any) (indexEntry, error) {
	sc, _ := score.(string)
	f, err := strconv.ParseFloat(sc, 64)
	if err != nil {
		return indexEntry{}, fmt.Errorf("bad score %q", sc)
	}
	return indexEntry{score: int64(f), id: member}, nil
}
