package taskflow

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// findAll follows Find's cursors to the end and returns the ids in
// order, failing on a flow returned twice or one that does not match.
func findAll(t testing.TB, e *env, f Filter, limit int) []uuid.UUID {
	t.Helper()
	var out []uuid.UUID
	seen := map[uuid.UUID]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("Find(%+v) did not end", f)
		}
		p := must(t, try(e.m.Find(e.ctx, f, WithLimit(limit), WithCursor(cursor))))
		if len(p.Flows) > limit {
			t.Fatalf("page of %d flows, limit %d", len(p.Flows), limit)
		}
		mustMatch(t, f, p.Flows)
		for _, fl := range p.Flows {
			if seen[fl.ID] {
				t.Fatalf("Find(%+v) returned %s twice", f, fl.ID)
			}
			seen[fl.ID] = true
			out = append(out, fl.ID)
		}
		if p.Next == "" {
			return out
		}
		cursor = p.Next
	}
}

// mustMatch fails unless every flow passes the filter.
func mustMatch(t testing.TB, f Filter, flows []*Flow) {
	t.Helper()
	var name, value string
	if f.Attribute != "" {
		name, value, _ = strings.Cut(f.Attribute, "=")
	}
	for _, fl := range flows {
		if !f.matches(fl, name, value) {
			t.Fatalf("Find(%+v) returned %s: %s, %s, %s, %v", f, fl.ID, fl.Status, fl.ControllerID, fl.OwnerSessionKey, fl.Attributes)
		}
	}
}

func attrInput(ctl, owner string, attrs map[string]string) CreateManagedInput {
	in := seedInput()
	in.ControllerID, in.OwnerSessionKey, in.Attributes = ctl, owner, attrs
	return in
}

func TestCreateWithAttributes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1",
			map[string]string{"customer": "acme", "priority": "2"}))))
		if f.Attributes["customer"] != "acme" || f.Attributes["priority"] != "2" || len(f.Attributes) != 2 {
			t.Fatalf("created attributes %v", f.Attributes)
		}
		got := must(t, try(e.m.Get(e.ctx, f.ID)))
		if len(got.Attributes) != 2 || got.Attributes["customer"] != "acme" {
			t.Fatalf("read attributes %v", got.Attributes)
		}
		plain := must(t, try(e.m.CreateManaged(e.ctx, seedInput())))
		if plain.Attributes != nil {
			t.Fatalf("a flow without attributes has %v", plain.Attributes)
		}
		// The state's fields and the attributes' do not mix.
		if s := stateOf(t, got); len(s) != 2 {
			t.Fatalf("state %s", got.State)
		}
		mustVerify(t, e)
	})
}

func TestAttributeBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		nine := map[string]string{}
		for i := 0; i < 9; i++ {
			nine[fmt.Sprintf("a%d", i)] = "x"
		}
		bad := []struct {
			attrs map[string]string
			names string
		}{
			{nine, ""},
			{map[string]string{"": "x"}, `""`},
			{map[string]string{"Customer": "x"}, "Customer"},
			{map[string]string{"a=b": "x"}, "a=b"},
			{map[string]string{strings.Repeat("a", 65): "x"}, "aaaa"},
			{map[string]string{"customer": ""}, "customer"},
			{map[string]string{"customer": strings.Repeat("v", 257)}, "customer"},
			{map[string]string{"customer": "a\nb"}, "customer"},
			{map[string]string{"customer": "\xff"}, "customer"},
		}
		before := e.dump()
		for _, b := range bad {
			_, err := e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", b.attrs))
			if !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), b.names) {
				t.Fatalf("attributes %v: error %v, want ErrInvalidData naming %s", b.attrs, err, b.names)
			}
		}
		e.sameDump(t, before, "refused creates")
		eight := map[string]string{}
		for i := 0; i < 8; i++ {
			eight[fmt.Sprintf("a.%d_x-y", i)] = strings.Repeat("é", 128)
		}
		f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", eight))))
		if len(f.Attributes) != 8 {
			t.Fatalf("attributes %v", f.Attributes)
		}
		// A ninth by SetAttributes is refused, writing nothing.
		before = e.dump()
		_, err := e.m.SetAttributes(e.ctx, f.ID, map[string]string{"ninth": "x"}, nil)
		if !errors.Is(err, ErrInvalidData) {
			t.Fatalf("ninth attribute: %v", err)
		}
		_, err = e.m.SetAttributes(e.ctx, f.ID, map[string]string{"a.0_x-y": "x"}, []string{"a.0_x-y"})
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.SetAttributes(e.ctx, f.ID, nil, []string{"No"})
		wantErr(t, err, ErrInvalidData)
		e.sameDump(t, before, "refused attribute changes")
		// Replacing one keeps the count.
		must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"ninth": "x"}, []string{"a.0_x-y"})))
		mustVerify(t, e)
	})
}

func TestSetAttributes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme"}))))
		g := must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"customer": "globex", "chapter": "7"}, nil, IfRevision(0))))
		if g.Revision != 1 || g.Attributes["customer"] != "globex" || g.Attributes["chapter"] != "7" {
			t.Fatalf("after set: rev %d attrs %v", g.Revision, g.Attributes)
		}
		evs := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))
		if evs[0].Kind != EventAttributesSet || string(evs[0].Payload) != `{"set":{"chapter":"7","customer":"globex"},"removed":[]}` {
			t.Fatalf("event %s %s", evs[0].Kind, evs[0].Payload)
		}
		if ids := findAll(t, e, Filter{Attribute: "customer=acme"}, 10); len(ids) != 0 {
			t.Fatalf("old value still found: %v", ids)
		}
		if ids := findAll(t, e, Filter{Attribute: "customer=globex"}, 10); len(ids) != 1 || ids[0] != f.ID {
			t.Fatalf("new value: %v", ids)
		}
		// A stale revision is refused.
		_, err := e.m.SetAttributes(e.ctx, f.ID, map[string]string{"customer": "x"}, nil, IfRevision(0))
		var rm *RevisionMismatchError
		if !errors.As(err, &rm) {
			t.Fatalf("stale revision: %v", err)
		}
		// Nothing to change: no revision, no event.
		g = must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"customer": "globex"}, []string{"absent"})))
		if g.Revision != 1 {
			t.Fatalf("no-op bumped the revision to %d", g.Revision)
		}
		// Remove; a re-sent call (same call id) applies once.
		g = must(t, try(e.m.SetAttributes(e.ctx, f.ID, nil, []string{"chapter"}, WithCallID("rm-1"))))
		g2 := must(t, try(e.m.SetAttributes(e.ctx, f.ID, nil, []string{"chapter"}, WithCallID("rm-1"))))
		if g.Revision != 2 || g2.Revision != 2 || len(g2.Attributes) != 1 {
			t.Fatalf("remove: rev %d then %d, attrs %v", g.Revision, g2.Revision, g2.Attributes)
		}
		evs = must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))
		if string(evs[0].Payload) != `{"set":{},"removed":["chapter"]}` {
			t.Fatalf("remove event %s", evs[0].Payload)
		}
		if ids := findAll(t, e, Filter{Attribute: "chapter=7"}, 10); len(ids) != 0 {
			t.Fatalf("removed attribute still found: %v", ids)
		}
		// Terminal flows refuse.
		must(t, try(e.m.Cancel(e.ctx, f.ID)))
		before := e.dump()
		_, err = e.m.SetAttributes(e.ctx, f.ID, map[string]string{"customer": "x"}, nil)
		wantErr(t, err, ErrAlreadyTerminal)
		e.sameDump(t, before, "refused on a terminal flow")
		_, err = e.m.SetAttributes(e.ctx, uuid.New(), map[string]string{"customer": "x"}, nil)
		wantErr(t, err, ErrNotFound)
		mustVerify(t, e)
	})
}

func TestFindCombines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		type made struct {
			f     *Flow
			ctl   string
			owner string
			cust  string
		}
		var all []made
		for i := 0; i < 60; i++ {
			ctl := []string{"c/a", "c/b", "c/c"}[i%3]
			owner := []string{"agent:x:session:1", "agent:y:session:1"}[i%2]
			cust := []string{"acme", "globex", "initech", "umbrella", "hooli"}[i%5]
			f := must(t, try(e.m.CreateManaged(e.ctx, attrInput(ctl, owner, map[string]string{"customer": cust}))))
			if i%4 == 0 {
				f = must(t, try(e.m.StartRunning(e.ctx, f.ID)))
			}
			all = append(all, made{f, ctl, owner, cust})
			if i%7 == 0 {
				e.clock.Advance(time.Millisecond) // some share a millisecond, some do not
			}
		}
		filters := []Filter{
			{Controller: "c/a"},
			{Attribute: "customer=acme"},
			{Owner: "agent:x:session:1"},
			{Status: StatusRunning},
			{Controller: "c/b", Status: StatusCreated},
			{Controller: "c/a", Attribute: "customer=globex"},
			{Owner: "agent:y:session:1", Attribute: "customer=hooli", Status: StatusCreated},
			{Controller: "c/none"},
			{Attribute: "customer=nobody", Status: StatusRunning},
		}
		for _, flt := range filters {
			var want []indexEntry
			for _, m := range all {
				if (flt.Controller == "" || m.ctl == flt.Controller) && (flt.Owner == "" || m.owner == flt.Owner) &&
					(flt.Status == "" || m.f.Status == flt.Status) && (flt.Attribute == "" || flt.Attribute == "customer="+m.cust) {
					score := m.f.CreatedAt.UnixMilli()
					if flt.Controller == "" && flt.Owner == "" && flt.Attribute == "" {
						score = m.f.UpdatedAt.UnixMilli() // the status index: when it entered the status
					}
					want = append(want, indexEntry{score, m.f.ID.String()})
				}
			}
			sort.Slice(want, func(i, j int) bool { return want[i].before(want[j], true) })
			for _, limit := range []int{1, 3, 100} {
				got := findAll(t, e, flt, limit)
				if len(got) != len(want) {
					t.Fatalf("Find(%+v) limit %d: %d flows, want %d", flt, limit, len(got), len(want))
				}
				for i := range got {
					if got[i].String() != want[i].id {
						t.Fatalf("Find(%+v) limit %d: flow %d is %s, want %s", flt, limit, i, got[i], want[i].id)
					}
				}
			}
		}
		for _, bad := range []Filter{{}, {Status: "bogus"}, {Attribute: "customer"}, {Attribute: "Customer=x"}, {Attribute: "customer="}} {
			_, err := e.m.Find(e.ctx, bad)
			wantErr(t, err, ErrInvalidData)
		}
		_, err := e.m.Find(e.ctx, Filter{Controller: "c/a"}, WithCursor("nonsense"))
		wantErr(t, err, ErrInvalidData)
	})
}

// TestFindScanBudget: a filter that few flows of the driving index pass
// gives pages with fewer flows than the limit (even none) that carry a
// cursor, and the listing still ends with every match.
func TestFindScanBudget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var want []uuid.UUID
		for i := 0; i < 700; i++ {
			f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", nil))))
			if i%300 == 5 {
				f = must(t, try(e.m.StartRunning(e.ctx, f.ID)))
				want = append([]uuid.UUID{f.ID}, want...)
			}
			e.clock.Advance(time.Millisecond)
		}
		p := must(t, try(e.m.Find(e.ctx, Filter{Controller: "c/a", Status: StatusRunning}, WithLimit(10))))
		if p.Next == "" {
			t.Fatalf("first page of a sparse filter has no cursor")
		}
		got := findAll(t, e, Filter{Controller: "c/a", Status: StatusRunning}, 10)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("sparse filter: %v, want %v", got, want)
		}
	}, WithShards(1)) // one shard: 700 flows in one index, past one call's budget
}

// TestFindCompleteUnderWrites pages through a filter while a writer
// creates flows, moves them and prunes finished ones: every flow that
// matches the filter for the whole listing comes back exactly once.
func TestFindCompleteUnderWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		stable := map[uuid.UUID]bool{}
		var movers, stables []uuid.UUID
		for i := 0; i < 150; i++ {
			f := must(t, try(e.m.CreateMirrored(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme"}))))
			if i%2 == 0 {
				stable[f.ID] = true // stays running, in c/a, with customer=acme
				stables = append(stables, f.ID)
			} else {
				movers = append(movers, f.ID)
			}
			if i%10 == 0 {
				e.clock.Advance(time.Millisecond)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var writes atomic.Int64
		// halt stops the writer, also when the reader fails first (its
		// writes must not race the env's cleanup).
		var once sync.Once
		halt := func() { once.Do(func() { close(stop); wg.Wait() }) }
		defer halt()
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				i++
				// New matching flows, flows that stop matching, and
				// prunes of finished ones.
				nf, err := e.m.CreateMirrored(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme"}))
				if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				if i%2 == 0 {
					_, _ = e.m.Finish(e.ctx, nf.ID, nil)
				}
				if i <= len(movers) {
					id := movers[i-1]
					switch i % 3 {
					case 0:
						_, _ = e.m.Finish(e.ctx, id, nil)
					case 1:
						_, _ = e.m.SetAttributes(e.ctx, id, map[string]string{"customer": "globex"}, nil)
					default:
						_, _ = e.m.SetWaiting(e.ctx, id, map[string]any{"kind": "external_event", "topic": "t", "correlation_id": id.String()})
					}
				}
				// Writes that keep a stable flow matching: it must
				// keep its place in every index.
				sid := stables[i%len(stables)]
				if _, err := e.m.SetAttributes(e.ctx, sid, map[string]string{"touch": fmt.Sprint(i), "customer": "acme"}, nil); err != nil {
					t.Errorf("touch: %v", err)
					return
				}
				if _, err := e.m.UpdateState(e.ctx, sid, map[string]int{"i": i}, "touched"); err != nil {
					t.Errorf("update: %v", err)
					return
				}
				e.clock.Advance(time.Millisecond)
				if i%5 == 0 {
					if _, err := e.m.PruneTerminalFlows(e.ctx, 0); err != nil {
						t.Errorf("prune: %v", err)
						return
					}
				}
				writes.Add(1)
			}
		}()
		for _, flt := range []Filter{
			{Attribute: "customer=acme", Status: StatusRunning},
			{Controller: "c/a", Status: StatusRunning},
			{Owner: "agent:a:session:1", Attribute: "customer=acme"},
			{Status: StatusRunning},
		} {
			// Page by hand, letting the writer move between pages.
			seen := map[uuid.UUID]bool{}
			cursor := ""
			for {
				p := must(t, try(e.m.Find(e.ctx, flt, WithLimit(7), WithCursor(cursor))))
				mustMatch(t, flt, p.Flows)
				for _, fl := range p.Flows {
					if seen[fl.ID] {
						t.Fatalf("Find(%+v) returned %s twice", flt, fl.ID)
					}
					seen[fl.ID] = true
				}
				if p.Next == "" {
					break
				}
				cursor = p.Next
				for w := writes.Load(); writes.Load() < w+2 && !t.Failed(); {
					time.Sleep(100 * time.Microsecond)
				}
			}
			for id := range stable {
				if !seen[id] {
					t.Fatalf("Find(%+v) missed flow %s, which matched throughout", flt, id)
				}
			}
		}
		halt()
		if writes.Load() == 0 {
			t.Fatalf("the writer wrote nothing while the reader paged")
		}
		t.Logf("%d writer rounds while paging", writes.Load())
	})
}

func TestPruneDropsFindIndexes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme"}))))
		must(t, try(e.m.Finish(e.ctx, f.ID, nil)))
		e.clock.Advance(time.Second)
		if n := must(t, try(e.m.PruneTerminalFlows(e.ctx, 0))); n != 1 {
			t.Fatalf("pruned %d", n)
		}
		shard := e.store.keys.shardOf(f.ID)
		for _, k := range []string{e.store.keys.controllerIndex(shard, "c/a"), e.store.keys.attr(shard, "customer", "acme")} {
			if n := e.client.Exists(e.ctx, k).Val(); n != 0 {
				t.Fatalf("%s left after prune", k)
			}
		}
		mustVerify(t, e)
	})
}

func TestInsertFlowKeepsAttributes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := importedFlow(e, StatusRunning, nil, false)
		f.Attributes = map[string]string{"customer": "acme", "chapter": "7"}
		got := must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: f, Steps: importedSteps(f), Events: importedEvents(f, 3)})))
		if len(got.Attributes) != 2 || got.Attributes["chapter"] != "7" {
			t.Fatalf("inserted attributes %v", got.Attributes)
		}
		for _, flt := range []Filter{{Attribute: "chapter=7"}, {Controller: "legacy/ctl"}} {
			if ids := findAll(t, e, flt, 10); len(ids) != 1 || ids[0] != f.ID {
				t.Fatalf("Find(%+v) after insert: %v", flt, ids)
			}
		}
		bad := importedFlow(e, StatusRunning, nil, false)
		bad.Attributes = map[string]string{"Bad": "x"}
		before := e.dump()
		_, err := e.store.InsertFlow(e.ctx, Import{Flow: bad})
		wantErr(t, err, ErrInvalidData)
		e.sameDump(t, before, "refused insert")
		mustVerify(t, e)
	})
}

// TestWriteFlowMovesControllerIndex: UpdateAndAppend may change a flow's
// controller; the flow moves to the new controller's index.
func TestWriteFlowMovesControllerIndex(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/old", "agent:a:session:1", map[string]string{"customer": "acme"}))))
		f.ControllerID = "c/new"
		f, _, err := e.store.UpdateAndAppend(e.ctx, f, "operator_edit", nil)
		if err != nil {
			t.Fatalf("UpdateAndAppend: %v", err)
		}
		if ids := findAll(t, e, Filter{Controller: "c/old"}, 10); len(ids) != 0 {
			t.Fatalf("old controller still lists %v", ids)
		}
		if ids := findAll(t, e, Filter{Controller: "c/new"}, 10); len(ids) != 1 || ids[0] != f.ID {
			t.Fatalf("new controller lists %v", ids)
		}
		if f.Attributes["customer"] != "acme" {
			t.Fatalf("attributes after write: %v", f.Attributes)
		}
		mustVerify(t, e)
	})
}

// TestVerifyFindIndexes: Verify reports a flow missing from its
// controller's or an attribute's index and a stale entry in one, and
// repair rebuilds them.
func TestVerifyFindIndexes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme"}))))
		shard := e.store.keys.shardOf(f.ID)
		ctl, attr := e.store.keys.controllerIndex(shard, "c/a"), e.store.keys.attr(shard, "customer", "acme")
		stale := e.store.keys.attr(shard, "customer", "globex")
		e.client.ZRem(e.ctx, ctl, f.ID.String())
		e.client.ZRem(e.ctx, attr, f.ID.String())
		e.client.ZAdd(e.ctx, stale, redis.Z{Score: 1, Member: f.ID.String()})
		gone := uuid.New()
		e.client.ZAdd(e.ctx, e.store.keys.controllerIndex(e.store.keys.shardOf(gone), "c/a"), redis.Z{Score: 1, Member: gone.String()})
		// A stale entry is never listed, even before the repair.
		if ids := findAll(t, e, Filter{Attribute: "customer=globex"}, 10); len(ids) != 0 {
			t.Fatalf("stale entry listed: %v", ids)
		}
		if ids := findAll(t, e, Filter{Controller: "c/a"}, 10); len(ids) != 0 {
			t.Fatalf("entry of a flow that is gone listed: %v", ids)
		}
		rep := must(t, try(e.m.Verify(e.ctx)))
		kinds := map[string]string{}
		for _, p := range rep.Problems {
			kinds[p.Key+" "+p.Member] = string(p.Kind)
		}
		want := map[string]string{
			ctl + " ":                   string(fsck.FindIndexMissing),
			attr + " ":                  string(fsck.FindIndexMissing),
			stale + " " + f.ID.String(): string(fsck.StaleIndexEntry),
			e.store.keys.controllerIndex(e.store.keys.shardOf(gone), "c/a") + " " + gone.String(): string(fsck.StaleIndexEntry),
		}
		for k, v := range want {
			if kinds[k] != v {
				t.Fatalf("problem %q: %q, want %q (all: %+v)", k, kinds[k], v, rep.Problems)
			}
		}
		if len(rep.Problems) != len(want) {
			t.Fatalf("problems %+v", rep.Problems)
		}
		must(t, try(e.m.Verify(e.ctx, fsck.WithRepair())))
		mustVerify(t, e)
		if ids := findAll(t, e, Filter{Attribute: "customer=acme", Controller: "c/a"}, 10); len(ids) != 1 {
			t.Fatalf("after repair: %v", ids)
		}
		if ids := findAll(t, e, Filter{Attribute: "customer=globex"}, 10); len(ids) != 0 {
			t.Fatalf("stale entry listed after repair: %v", ids)
		}
	})
}

// TestFindSkewedShards: when one shard holds most matches, a first page
// takes more rounds of scans (each shard first gives a fair share) and
// still comes out whole and in order.
func TestFindSkewedShards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var want []uuid.UUID
		for i, n := 0, 0; n < 64; i++ {
			key := fmt.Sprintf("skew-%d", i)
			id := e.store.IdempotentFlowID(key)
			if e.store.keys.shardOf(id) != 3 && i%20 != 0 {
				continue
			}
			in := attrInput("c/skew", "agent:a:session:1", nil)
			in.IdempotencyKey = key
			must(t, try(e.m.CreateManaged(e.ctx, in)))
			want = append([]uuid.UUID{id}, want...)
			e.clock.Advance(time.Millisecond)
			n++
		}
		first := must(t, try(e.m.Find(e.ctx, Filter{Controller: "c/skew"}, WithLimit(40))))
		if len(first.Flows) != 40 || first.Next == "" {
			t.Fatalf("first page: %d flows, next %q; want 40 and a cursor", len(first.Flows), first.Next)
		}
		got := findAll(t, e, Filter{Controller: "c/skew"}, 40)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("skewed listing:\n got %v\nwant %v", got, want)
		}
	})
}

// TestFindIndexesWithoutController: InsertFlow and UpdateAndAppend accept
// a flow without a controller; its prune must leave no controller index
// entry behind (an orphan nobody reads and nothing removes), and Verify
// must hold throughout.
func TestFindIndexesWithoutController(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		imp := importedFlow(e, StatusFinished, nil, false)
		imp.ControllerID = ""
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: imp})))
		mustVerify(t, e)
		// An entry left under the empty controller id (by a store
		// before this rule) is stale, and repaired.
		empty := e.store.keys.controllerIndex(e.store.keys.shardOf(imp.ID), "")
		e.client.ZAdd(e.ctx, empty, redis.Z{Score: 1, Member: imp.ID.String()})
		rep := must(t, try(e.m.Verify(e.ctx)))
		if len(rep.Problems) != 1 || rep.Problems[0].Kind != fsck.StaleIndexEntry || rep.Problems[0].Key != empty {
			t.Fatalf("problems %+v, want one stale entry in %s", rep.Problems, empty)
		}
		must(t, try(e.m.Verify(e.ctx, fsck.WithRepair())))
		mustVerify(t, e)
		f := must(t, try(e.m.CreateMirrored(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme"}))))
		f.ControllerID = ""
		f, _, err := e.store.UpdateAndAppend(e.ctx, f, "operator_edit", nil)
		if err != nil {
			t.Fatalf("UpdateAndAppend: %v", err)
		}
		if ids := findAll(t, e, Filter{Controller: "c/a"}, 10); len(ids) != 0 {
			t.Fatalf("old controller still lists %v", ids)
		}
		mustVerify(t, e)
		must(t, try(e.m.Finish(e.ctx, f.ID, nil)))
		e.clock.Advance(time.Second)
		if n := must(t, try(e.m.PruneTerminalFlows(e.ctx, 0))); n != 2 {
			t.Fatalf("pruned %d, want 2", n)
		}
		for k := range e.dump() {
			if strings.Contains(k, ":ctl:") || strings.Contains(k, ":attr:") {
				t.Fatalf("%s left after prune", k)
			}
		}
		mustVerify(t, e)
	})
}

// TestSetAttributesLostReply: a SetAttributes whose reply is lost (the
// client re-sends it) applies once: one revision, one event, and the
// indexes moved once.
func TestSetAttributesLostReply(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			c, d := lossyClient(t, b)
			store := e.reopenStore(c)
			m := NewManager(store)
			defer m.Close()
			if err := store.LoadScripts(e.ctx); err != nil {
				t.Fatal(err)
			}
			f := must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme", "tier": "gold"}))))
			for i, call := range []func() (*Flow, error){
				func() (*Flow, error) {
					return m.SetAttributes(e.ctx, f.ID, map[string]string{"customer": "globex"}, []string{"tier"}, IfRevision(0))
				},
				func() (*Flow, error) {
					return m.SetAttributes(e.ctx, f.ID, map[string]string{"tier": "gold"}, nil, IfRevision(1))
				},
			} {
				n := d.dropped.Load()
				d.armFor(store.scripts.setAttributes)
				g, err := call()
				if err != nil {
					t.Fatalf("call %d with a lost reply: %v", i, err)
				}
				if d.dropped.Load() != n+1 {
					t.Fatalf("call %d: no reply dropped", i)
				}
				if g.Revision != int64(i+1) {
					t.Fatalf("call %d: revision %d", i, g.Revision)
				}
			}
			if n := eventCount(t, e.m, f.ID); n != 3 {
				t.Fatalf("%d events, want 3 (created, two attributes_set)", n)
			}
			if ids := findAll(t, e, Filter{Attribute: "customer=globex", Controller: "c/a"}, 10); len(ids) != 1 {
				t.Fatalf("globex lists %v", ids)
			}
			if ids := findAll(t, e, Filter{Attribute: "tier=gold"}, 10); len(ids) != 1 {
				t.Fatalf("tier=gold lists %v", ids)
			}
			if ids := findAll(t, e, Filter{Attribute: "customer=acme"}, 10); len(ids) != 0 {
				t.Fatalf("acme lists %v", ids)
			}
			mustVerify(t, e)
		})
	}
}

// TestCreateAttributesFingerprint: an idempotent create with the same key
// and other attributes is a conflict; the same attributes (a map has no
// order) answer with the flow made first, writing nothing.
func TestCreateAttributesFingerprint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := attrInput("c/a", "agent:a:session:1", map[string]string{"customer": "acme", "priority": "2", "z": "1", "a": "9"})
		in.IdempotencyKey = "fp-1"
		f := must(t, try(e.m.CreateManaged(e.ctx, in)))
		before := e.dump()
		for i := 0; i < 5; i++ {
			again := in
			again.Attributes = map[string]string{"a": "9", "z": "1", "priority": "2", "customer": "acme"}
			g := must(t, try(e.m.CreateManaged(e.ctx, again)))
			if g.ID != f.ID {
				t.Fatalf("same input made %s, want %s", g.ID, f.ID)
			}
		}
		e.sameDump(t, before, "an idempotent repeat")
		for _, attrs := range []map[string]string{
			nil,
			{"customer": "acme", "priority": "2", "z": "1"},
			{"customer": "acme", "priority": "3", "z": "1", "a": "9"},
			{"customer": "acme", "priority": "2", "z": "1", "b": "9"},
			{"customer": "acme", "priority": "2", "z": "1", "a": "9", "x": "1"},
		} {
			other := in
			other.Attributes = attrs
			_, err := e.m.CreateManaged(e.ctx, other)
			wantErr(t, err, ErrIdempotencyConflict)
		}
		e.sameDump(t, before, "refused conflicting creates")
		// An empty map is no attributes, as nil is.
		plain := attrInput("c/a", "agent:a:session:1", nil)
		plain.IdempotencyKey = "fp-2"
		p := must(t, try(e.m.CreateManaged(e.ctx, plain)))
		plain.Attributes = map[string]string{}
		if q := must(t, try(e.m.CreateManaged(e.ctx, plain))); q.ID != p.ID {
			t.Fatalf("an empty map made another flow")
		}
		mustVerify(t, e)
	})
}

// TestFindOddNames: controller ids and attribute values holding ':', '=',
// braces (which must not move a key to another cluster slot) and
// non-ASCII are created, found, verified and pruned like any other.
func TestFindOddNames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctls := []string{"a:b", "{x}", "}{", "c/{7}/d", "ü:=é", "{", "x}", "x\x00y",
			e.prefix + ":{0}:flow:" + uuid.NewString(), "*", "x:attr:v=a=b"} // crafted to look like other keys
		vals := []string{"a=b", "k:v", "{0}", "}", "日本語", "=", ":", "{}", "a b"}
		var made []*Flow
		for i, ctl := range ctls {
			for j, v := range vals {
				in := attrInput(ctl, "agent:{1}:session:x", map[string]string{"v": v, "n": fmt.Sprint(i*100 + j)})
				made = append(made, must(t, try(e.m.CreateMirrored(e.ctx, in))))
			}
		}
		mustVerify(t, e)
		for _, ctl := range ctls {
			if ids := findAll(t, e, Filter{Controller: ctl}, 4); len(ids) != len(vals) {
				t.Fatalf("controller %q: %d flows, want %d", ctl, len(ids), len(vals))
			}
			for _, v := range vals {
				if ids := findAll(t, e, Filter{Controller: ctl, Attribute: "v=" + v}, 3); len(ids) != 1 {
					t.Fatalf("controller %q, v=%q: %v", ctl, v, ids)
				}
			}
		}
		for _, v := range vals {
			if ids := findAll(t, e, Filter{Attribute: "v=" + v, Status: StatusRunning}, 2); len(ids) != len(ctls) {
				t.Fatalf("v=%q: %d flows, want %d", v, len(ids), len(ctls))
			}
		}
		for i, f := range made {
			if i%2 == 0 {
				must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"v": "}{:="}, []string{"n"})))
			}
			must(t, try(e.m.Finish(e.ctx, f.ID, nil)))
		}
		mustVerify(t, e)
		e.clock.Advance(time.Second)
		if n := must(t, try(e.m.PruneTerminalFlows(e.ctx, 0))); n != len(made) {
			t.Fatalf("pruned %d of %d", n, len(made))
		}
		for k := range e.dump() {
			if strings.Contains(k, ":ctl:") || strings.Contains(k, ":attr:") {
				t.Fatalf("%s left after prune", k)
			}
		}
		mustVerify(t, e)
	})
}

// TestFindHostileInput: a cursor or limit that is garbage or hostile is
// ErrInvalidData or a sane page, never a panic or a script error.
func TestFindHostileInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var all []uuid.UUID
		for i := 0; i < 30; i++ {
			all = append(all, must(t, try(e.m.CreateManaged(e.ctx, attrInput("c/a", "agent:a:session:1", map[string]string{"k": "v"})))).ID)
			if i%3 == 0 {
				e.clock.Advance(time.Millisecond)
			}
		}
		for _, flt := range []Filter{{Controller: "c/a"}, {Attribute: "k=v"}, {Status: StatusCreated}, {Owner: "agent:a:session:1", Status: StatusCreated}} {
			for _, cur := range []string{"nonsense", ":", ":x", "x:", "1.5:x", "0x10:a", "99999999999999999999:x", " 1:x"} {
				_, err := e.m.Find(e.ctx, flt, WithCursor(cur))
				wantErr(t, err, ErrInvalidData)
			}
			for _, cur := range []string{"1:", "-9223372036854775808:", "9223372036854775807:zzzz", "0:{}", "5:" + strings.Repeat("é", 5000), "1:\x00\xff", "-1:" + uuid.NewString()} {
				p, err := e.m.Find(e.ctx, flt, WithCursor(cur), WithLimit(5))
				if err != nil && !errors.Is(err, ErrInvalidData) {
					t.Fatalf("Find(%+v) cursor %.40q: %v", flt, cur, err)
				}
				if err == nil && len(p.Flows) > 5 {
					t.Fatalf("Find(%+v) cursor %.40q: %d flows", flt, cur, len(p.Flows))
				}
			}
			for _, limit := range []int{0, -1, -1 << 62, 1 << 40} {
				// Below 1 is the default (100), above 1000 is 1000:
				// the 30 flows come in one page.
				p := must(t, try(e.m.Find(e.ctx, flt, WithLimit(limit))))
				if len(p.Flows) != len(all) || p.Next != "" {
					t.Fatalf("Find(%+v) limit %d: %d flows, next %q; want %d and none", flt, limit, len(p.Flows), p.Next, len(all))
				}
			}
		}
	})
}

// TestSetAttributesCases: empty calls, a cancel-requested flow, a lean
// reply, a stale lease.
func TestSetAttributesCases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, attrInput("c/a", "agent:a:session:1", nil))))
		g := must(t, try(e.m.SetAttributes(e.ctx, f.ID, nil, nil)))
		if g.Revision != f.Revision || g.Attributes != nil {
			t.Fatalf("empty call: rev %d attrs %v", g.Revision, g.Attributes)
		}
		g = must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{}, []string{})))
		if g.Revision != f.Revision {
			t.Fatalf("empty maps: rev %d", g.Revision)
		}
		_, err := e.m.SetAttributes(e.ctx, uuid.New(), nil, nil)
		wantErr(t, err, ErrNotFound)
		// Removing the same name twice removes it once.
		must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"a": "1", "b": "2"}, nil)))
		g = must(t, try(e.m.SetAttributes(e.ctx, f.ID, nil, []string{"a", "a"})))
		if len(g.Attributes) != 1 || g.Attributes["b"] != "2" {
			t.Fatalf("after remove: %v", g.Attributes)
		}
		// A lean reply still applies, and the indexes follow.
		g = must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"c": "3"}, nil, WithoutState())))
		if ids := findAll(t, e, Filter{Attribute: "c=3"}, 10); len(ids) != 1 {
			t.Fatalf("lean set: %v", ids)
		}
		// Cancel requested: still accepted.
		must(t, try(e.m.RequestCancel(e.ctx, f.ID)))
		g = must(t, try(e.m.SetAttributes(e.ctx, f.ID, map[string]string{"d": "4"}, nil)))
		if g.Attributes["d"] != "4" || !g.CancelRequested {
			t.Fatalf("cancel requested: %+v", g)
		}
		// A lease lost is refused, writing nothing.
		h := must(t, try(e.m.CreateMirrored(e.ctx, attrInput("c/lease", "agent:a:session:1", nil))))
		_, l, err := e.m.Claim(e.ctx, "c/lease", "w", time.Minute, WithClaimWait(0))
		if err != nil || l == nil {
			t.Fatalf("claim: %v", err)
		}
		must(t, try(e.m.SetAttributes(e.ctx, h.ID, map[string]string{"x": "1"}, nil, WithLease(l))))
		bad := *l
		bad.Token = "nope"
		before := e.dump()
		_, err = e.m.SetAttributes(e.ctx, h.ID, map[string]string{"x": "2"}, nil, WithLease(&bad))
		wantErr(t, err, ErrLeaseLost)
		e.sameDump(t, before, "a refused set under a lost lease")
		mustVerify(t, e)
	})
}

// TestFindFrontier: one shard's scan runs out of budget on flows that do
// not match while the other shards reach their ends with older matches.
// A page must hold no match older than where that shard stopped (its
// cursor resumes there in every shard): a page that took them would
// either repeat them on the next page or, with its cursor past them,
// skip the older matches of the stopped shard.
func TestFindFrontier(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var want []uuid.UUID // newest first
		add := func(n int, inShard3 bool, running bool) {
			for i := 0; n > 0; i++ {
				key := fmt.Sprintf("front-%v-%v-%d-%d", inShard3, running, len(want), i)
				id := e.store.IdempotentFlowID(key)
				if (e.store.keys.shardOf(id) == 3) != inShard3 {
					continue
				}
				in := attrInput("c/front", "agent:a:session:1", nil)
				in.IdempotencyKey = key
				if running {
					must(t, try(e.m.CreateMirrored(e.ctx, in)))
					want = append([]uuid.UUID{id}, want...)
				} else {
					must(t, try(e.m.CreateManaged(e.ctx, in)))
				}
				e.clock.Advance(time.Millisecond)
				n--
			}
		}
		add(20, false, true) // the oldest: matches in other shards
		add(3, true, true)   // then matches in shard 3
		add(300, true, false)
		got := findAll(t, e, Filter{Controller: "c/front", Status: StatusRunning}, 10)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("listing:\n got %v\nwant %v", got, want)
		}
	})
}

// TestFindModel runs random creates (managed, mirrored, idempotent
// repeats, imports), attribute changes, controller changes, ends and
// prunes against a model of which flows each index should list, checks
// Find and Verify against it, and at the end prunes everything: no
// controller or attribute index entry may be left.
func TestFindModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		rng := rand.New(rand.NewSource(25))
		ctls := []string{"m/a", "m/b", "m/{c}"}
		vals := []string{"x", "y", "z=1"}
		type flowModel struct {
			ctl   string
			attrs map[string]string
			done  bool
		}
		model := map[uuid.UUID]*flowModel{}
		ids := func() []uuid.UUID {
			var out []uuid.UUID
			for id := range model {
				out = append(out, id)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
			return out
		}
		randAttrs := func() map[string]string {
			a := map[string]string{}
			for _, n := range []string{"k1", "k2", "k3"} {
				if rng.Intn(2) == 0 {
					a[n] = vals[rng.Intn(len(vals))]
				}
			}
			return a
		}
		check := func(step int) {
			t.Helper()
			for _, ctl := range ctls {
				want := map[uuid.UUID]bool{}
				for id, m := range model {
					if m.ctl == ctl {
						want[id] = true
					}
				}
				got := findAll(t, e, Filter{Controller: ctl}, 3)
				if len(got) != len(want) {
					t.Fatalf("step %d: controller %s lists %d, want %d", step, ctl, len(got), len(want))
				}
			}
			for _, n := range []string{"k1", "k2", "k3"} {
				for _, v := range vals {
					want := 0
					for _, m := range model {
						if m.attrs[n] == v {
							want++
						}
					}
					if got := findAll(t, e, Filter{Attribute: n + "=" + v}, 4); len(got) != want {
						t.Fatalf("step %d: %s=%s lists %d, want %d", step, n, v, len(got), want)
					}
				}
			}
			mustVerify(t, e)
		}
		for step := 0; step < 160; step++ {
			all := ids()
			var pick uuid.UUID
			if len(all) > 0 {
				pick = all[rng.Intn(len(all))]
			}
			switch op := rng.Intn(8); {
			case op <= 1 || len(all) == 0: // create, sometimes idempotent and repeated
				in := attrInput(ctls[rng.Intn(len(ctls))], "agent:m:session:1", randAttrs())
				if rng.Intn(3) == 0 {
					in.IdempotencyKey = fmt.Sprintf("model-%d", rng.Intn(10))
				}
				var f *Flow
				var err error
				if rng.Intn(2) == 0 {
					f, err = e.m.CreateMirrored(e.ctx, in)
				} else {
					f, err = e.m.CreateManaged(e.ctx, in)
				}
				if errors.Is(err, ErrIdempotencyConflict) || errors.Is(err, ErrAlreadyExists) {
					continue
				}
				if err != nil {
					t.Fatalf("step %d: create: %v", step, err)
				}
				if _, ok := model[f.ID]; !ok {
					model[f.ID] = &flowModel{ctl: in.ControllerID, attrs: in.Attributes}
				}
			case op == 2: // import
				imp := importedFlow(e, []FlowStatus{StatusRunning, StatusFinished}[rng.Intn(2)], nil, false)
				imp.ControllerID = []string{"", ctls[rng.Intn(len(ctls))]}[rng.Intn(2)]
				imp.Attributes = randAttrs()
				must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: imp})))
				model[imp.ID] = &flowModel{ctl: imp.ControllerID, attrs: imp.Attributes, done: imp.Status == StatusFinished}
			case op == 3 || op == 4: // attributes
				set, remove := map[string]string{}, []string(nil)
				for _, n := range []string{"k1", "k2", "k3"} {
					switch rng.Intn(3) {
					case 0:
						set[n] = vals[rng.Intn(len(vals))]
					case 1:
						remove = append(remove, n)
					}
				}
				_, err := e.m.SetAttributes(e.ctx, pick, set, remove)
				if model[pick].done {
					wantErr(t, err, ErrAlreadyTerminal)
					continue
				}
				if err != nil {
					t.Fatalf("step %d: set attributes: %v", step, err)
				}
				a := map[string]string{}
				for n, v := range model[pick].attrs {
					a[n] = v
				}
				for n, v := range set {
					a[n] = v
				}
				for _, n := range remove {
					delete(a, n)
				}
				model[pick].attrs = a
			case op == 5: // another controller, or none
				f := must(t, try(e.m.Get(e.ctx, pick)))
				f.ControllerID = []string{"", ctls[rng.Intn(len(ctls))]}[rng.Intn(2)]
				if _, _, err := e.store.UpdateAndAppend(e.ctx, f, "operator_edit", nil); err != nil {
					t.Fatalf("step %d: write: %v", step, err)
				}
				model[pick].ctl = f.ControllerID
			case op == 6: // end
				if _, err := e.m.Cancel(e.ctx, pick); err == nil {
					model[pick].done = true
				}
			default: // prune the ended
				e.clock.Advance(time.Second)
				must(t, try(e.m.PruneTerminalFlows(e.ctx, 0)))
				for id, m := range model {
					if m.done {
						delete(model, id)
					}
				}
			}
			e.clock.Advance(time.Millisecond)
			if step%40 == 39 {
				check(step)
			}
		}
		check(-1)
		for id, m := range model {
			if !m.done {
				must(t, try(e.m.Cancel(e.ctx, id)))
			}
		}
		e.clock.Advance(time.Second)
		must(t, try(e.m.PruneTerminalFlows(e.ctx, 0)))
		for k := range e.dump() {
			if strings.Contains(k, ":ctl:") || strings.Contains(k, ":attr:") {
				t.Fatalf("%s left after pruning every flow", k)
			}
		}
		mustVerify(t, e)
	})
}
