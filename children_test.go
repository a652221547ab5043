package taskflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// childInput is a child of the "ctl/child" controller.
func childInput(key string) ChildInput {
	in := seedInput()
	in.ControllerID = "ctl/child"
	in.Goal = "child " + key
	return ChildInput{Key: key, Flow: in}
}

// childrenOf starts n children keyed k0..k<n-1> under parent.
func (e *env) childrenOf(t testing.TB, parent uuid.UUID, n int, policy ParentClosePolicy) []*Flow {
	t.Helper()
	ins := make([]ChildInput, n)
	for i := range ins {
		ins[i] = childInput(fmt.Sprintf("k%d", i))
		ins[i].OnParentClose = policy
	}
	return must(t, try(e.m.StartChildren(e.ctx, parent, ins)))
}

// joinSummary is the parent's "children" state.
type joinSummary struct {
	Total, Finished, Failed, Cancelled, Pending int
	Why                                         string
	Results                                     []childOutcome
	ResultsOmitted                              bool `json:"results_omitted"`
}

func summaryOf(t testing.TB, f *Flow) joinSummary {
	t.Helper()
	var st struct {
		Children *joinSummary `json:"children"`
	}
	if err := json.Unmarshal(f.State, &st); err != nil || st.Children == nil {
		t.Fatalf("state %s: no children summary (%v)", f.State, err)
	}
	return *st.Children
}

func TestStartChildIsIdempotentPerKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		c1 := must(t, try(e.m.StartChild(ctx, p.ID, childInput("a"))))
		c2 := must(t, try(e.m.StartChild(ctx, p.ID, childInput("a"))))
		if c1.ID != c2.ID || c1.ParentID != p.ID || c1.ChildKey != "a" || c1.Status != StatusRunning {
			t.Fatalf("children %+v and %+v: want one running child of %s keyed a", c1, c2, p.ID)
		}
		other := childInput("a")
		other.Flow.Goal = "something else"
		if _, err := e.m.StartChild(ctx, p.ID, other); !errors.Is(err, ErrIdempotencyConflict) {
			t.Fatalf("same key, other input: %v, want ErrIdempotencyConflict", err)
		}
		got := must(t, try(e.m.Get(ctx, p.ID)))
		if got.Children != 1 || got.Revision != p.Revision {
			t.Fatalf("parent: %d children at revision %d, want 1 at %d", got.Children, got.Revision, p.Revision)
		}
		kids, next, err := e.m.ListChildren(ctx, p.ID)
		if err != nil || next != "" || len(kids) != 1 || kids[0].ID != c1.ID || kids[0].Key != "a" || kids[0].Status != StatusRunning || kids[0].Ended {
			t.Fatalf("ListChildren: %+v %q %v", kids, next, err)
		}
	})
}

func TestStartChildRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if _, err := e.m.StartChild(ctx, uuid.New(), childInput("a")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("no parent: %v, want ErrNotFound", err)
		}
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		bad := childInput("a")
		bad.Flow.IdempotencyKey = "mine"
		if _, err := e.m.StartChild(ctx, p.ID, bad); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("own idempotency key: %v, want ErrInvalidData", err)
		}
		bad = childInput("a")
		bad.OnParentClose = "explode"
		if _, err := e.m.StartChild(ctx, p.ID, bad); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("unknown policy: %v, want ErrInvalidData", err)
		}
		if _, err := e.m.StartChildren(ctx, p.ID, []ChildInput{childInput("x"), childInput("x")}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("repeated key: %v, want ErrInvalidData", err)
		}
		bad = childInput("a")
		bad.Flow.Goal = ""
		if _, err := e.m.StartChild(ctx, p.ID, bad); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("no goal: %v, want ErrInvalidData", err)
		}
		// Nothing above registered a child.
		if got := must(t, try(e.m.Get(ctx, p.ID))); got.Children != 0 {
			t.Fatalf("refused starts registered %d children", got.Children)
		}
		must(t, try(e.m.Finish(ctx, p.ID, nil)))
		if _, err := e.m.StartChild(ctx, p.ID, childInput("a")); !errors.Is(err, ErrAlreadyTerminal) {
			t.Fatalf("ended parent: %v, want ErrAlreadyTerminal", err)
		}
	})
}

func TestChildDepthAndCountAreBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		id := must(t, try(e.m.CreateMirrored(ctx, seedInput()))).ID
		for d := 1; d <= 2; d++ {
			id = must(t, try(e.m.StartChild(ctx, id, childInput("deeper")))).ID
		}
		if _, err := e.m.StartChild(ctx, id, childInput("deeper")); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("depth 3 with ChildDepth 2: %v, want ErrInvalidData", err)
		}
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		e.childrenOf(t, p.ID, 3, "")
		if _, err := e.m.StartChild(ctx, p.ID, childInput("one-more")); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("a 4th child with ChildrenPerFlow 3: %v, want ErrInvalidData", err)
		}
		e.childrenOf(t, p.ID, 3, "") // the same keys again: no new child
	}, WithLimits(Limits{ChildDepth: 2, ChildrenPerFlow: 3}))
}

func TestJoinPolicies(t *testing.T) {
	type step struct {
		child int
		end   FlowStatus
	}
	cases := []struct {
		name    string
		join    Join
		ends    []step
		resumed int // after how many ends the parent resumes
		why     string
	}{
		{"all", Join{}, []step{{0, StatusFinished}, {1, StatusFailed}, {2, StatusFinished}}, 3, "settled"},
		{"all finished", Join{}, []step{{0, StatusFinished}, {1, StatusFinished}, {2, StatusFinished}}, 3, "met"},
		{"any", Join{Need: 1}, []step{{2, StatusFinished}}, 1, "met"},
		{"2 of 3", Join{Need: 2}, []step{{0, StatusCancelled}, {1, StatusFinished}, {2, StatusFinished}}, 3, "met"},
		{"fail fast", Join{FailFast: true}, []step{{0, StatusFinished}, {1, StatusFailed}}, 2, "fail_fast"},
		{"fail fast on cancel", Join{FailFast: true}, []step{{1, StatusCancelled}}, 1, "fail_fast"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				ctx := e.ctx
				p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
				kids := e.childrenOf(t, p.ID, 3, ParentCloseAbandon)
				w := must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(tc.join))))
				if w.Status != StatusWaiting {
					t.Fatalf("parent %s before any child ended", w.Status)
				}
				for i, s := range tc.ends {
					id := kids[s.child].ID
					switch s.end {
					case StatusFinished:
						must(t, try(e.m.Finish(ctx, id, map[string]any{"answer": s.child})))
					case StatusFailed:
						must(t, try(e.m.Fail(ctx, id, "no luck")))
					case StatusCancelled:
						must(t, try(e.m.Cancel(ctx, id)))
					}
					got := must(t, try(e.m.Get(ctx, p.ID)))
					want := StatusWaiting
					if i+1 >= tc.resumed {
						want = StatusRunning
					}
					if got.Status != want {
						t.Fatalf("after %d ends the parent is %s, want %s", i+1, got.Status, want)
					}
				}
				got := must(t, try(e.m.Get(ctx, p.ID)))
				sum := summaryOf(t, got)
				if sum.Why != tc.why || sum.Total != 3 || len(sum.Results) != tc.resumed {
					t.Fatalf("summary %+v, want why %s, 3 children, %d results", sum, tc.why, tc.resumed)
				}
				for _, r := range sum.Results {
					if r.Status == StatusFinished && string(r.State) == "" {
						t.Fatalf("result %+v has no state", r)
					}
					if r.Status == StatusFailed && r.Error != "no luck" {
						t.Fatalf("result %+v: want error %q", r, "no luck")
					}
				}
				kinds := eventKinds(t, e, p.ID)
				if n := countKind(kinds, EventResumed); n != 1 {
					t.Fatalf("parent resumed %d times: %v", n, kinds)
				}
				mustVerify(t, e)
			})
		})
	}
}

func TestJoinAlreadyMetResumesAtOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kids := e.childrenOf(t, p.ID, 2, "")
		for _, k := range kids {
			must(t, try(e.m.Finish(ctx, k.ID, nil)))
		}
		f := must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{}))))
		if f.Status != StatusRunning || summaryOf(t, f).Finished != 2 {
			t.Fatalf("parent %s state %s: want running with 2 finished", f.Status, f.State)
		}
		// No children at all: nothing to wait for.
		q := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		f = must(t, try(e.m.SetWaiting(ctx, q.ID, WaitChildren(Join{}))))
		if f.Status != StatusRunning || summaryOf(t, f).Why != "met" {
			t.Fatalf("childless parent %s state %s", f.Status, f.State)
		}
	})
}

func TestJoinTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kids := e.childrenOf(t, p.ID, 3, ParentCloseAbandon)
		must(t, try(e.m.Finish(ctx, kids[0].ID, nil)))
		must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{Deadline: e.clock.Now().Add(time.Minute)}))))
		eng := e.engine()
		if rep := eng.Tick(ctx); rep.Resumed != 0 {
			t.Fatalf("tick before the deadline resumed %d", rep.Resumed)
		}
		mustVerify(t, e) // the deadline's timer entry is the wait's
		e.clock.Advance(2 * time.Minute)
		if rep := eng.Tick(ctx); rep.Resumed != 1 || rep.Err != nil {
			t.Fatalf("tick after the deadline: %+v", rep)
		}
		got := must(t, try(e.m.Get(ctx, p.ID)))
		sum := summaryOf(t, got)
		if got.Status != StatusRunning || sum.Why != "timeout" || sum.Finished != 1 || sum.Pending != 2 {
			t.Fatalf("parent %s summary %+v", got.Status, sum)
		}
		// A child ending later is kept, and resumes nothing.
		must(t, try(e.m.Finish(ctx, kids[1].ID, nil)))
		if n := countKind(eventKinds(t, e, p.ID), EventResumed); n != 1 {
			t.Fatalf("resumed %d times", n)
		}
		page, _, err := e.m.ListChildren(ctx, p.ID)
		if err != nil || len(page) != 3 || !page[1].Ended || page[2].Ended {
			t.Fatalf("children %+v %v", page, err)
		}
	})
}

func TestParentCloseCascades(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		root := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		// Depth 3: root -> 2 -> 2 each -> 2 each, by policy per level.
		var all []*Flow
		level := []*Flow{root}
		for d := 0; d < 3; d++ {
			var next []*Flow
			for _, p := range level {
				next = append(next, e.childrenOf(t, p.ID, 2, ParentCloseCancel)...)
			}
			all = append(all, next...)
			level = next
		}
		abandoned := must(t, try(e.m.StartChild(ctx, root.ID, ChildInput{Key: "stay", Flow: seedInput(), OnParentClose: ParentCloseAbandon})))
		asked := must(t, try(e.m.StartChild(ctx, root.ID, ChildInput{Key: "ask", Flow: seedInput(), OnParentClose: ParentCloseRequestCancel})))
		must(t, try(e.m.Cancel(ctx, root.ID)))
		for _, f := range all {
			if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusCancelled {
				t.Fatalf("descendant %s is %s after the root's cancel", f.ID, got.Status)
			}
		}
		if got := must(t, try(e.m.Get(ctx, abandoned.ID))); got.Status != StatusRunning || got.CancelRequested {
			t.Fatalf("abandoned child %s cancel=%v", got.Status, got.CancelRequested)
		}
		if got := must(t, try(e.m.Get(ctx, asked.ID))); got.Status != StatusRunning || !got.CancelRequested {
			t.Fatalf("request_cancel child %s cancel=%v", got.Status, got.CancelRequested)
		}
		if n := e.client.ZCard(ctx, e.store.keys.relay(e.store.keys.shardOf(root.ID))).Val(); n != 0 {
			t.Fatalf("root's shard has %d relay entries left", n)
		}
		mustVerify(t, e)
	})
}

// TestTickCountsRelaysBesideAFailure: a relay entry whose work fails
// (its flow's key holds a string) does not hide from the tick's report
// the entries it drove before and after it.
func TestTickCountsRelaysBesideAFailure(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kid := e.childrenOf(t, p.ID, 1, "")[0]
		must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{}))))
		broken := e.reopenStore(e.client)
		broken.noRelay = true
		must(t, try(broken.transition(ctx, transitionReq{id: kid.ID, to: StatusFinished, kind: EventFinished, payload: json.RawMessage(`{}`)})))
		bad := uuid.New()
		if err := e.client.Set(ctx, e.store.keys.flow(bad), "not a hash", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.client.ZAdd(ctx, e.store.keys.relay(e.store.keys.shardOf(bad)), redis.Z{Score: 0, Member: "d " + bad.String()}).Err(); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(relayGrace + time.Second)
		rep := e.engine().Tick(ctx)
		if rep.Err == nil || rep.Relayed != 1 {
			t.Fatalf("tick: relayed %d, err %v; want 1 and the bad entry's error", rep.Relayed, rep.Err)
		}
		if got := must(t, try(e.m.Get(ctx, p.ID))); got.Status != StatusRunning {
			t.Fatalf("parent %s after the tick", got.Status)
		}
		e.client.Del(ctx, e.store.keys.flow(bad))
		if rep := e.engine().Tick(ctx); rep.Err != nil || rep.Relayed != 1 {
			t.Fatalf("tick once the key is gone: %+v", rep)
		}
	})
}

func TestRelayLeftByADeadCallIsDrivenByTheTick(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kid := e.childrenOf(t, p.ID, 1, "")[0]
		must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{}))))
		// The child ends by a call that dies before it relays: the
		// store-level transition with the relay cut off.
		broken := e.reopenStore(e.client)
		broken.noRelay = true
		must(t, try(broken.transition(ctx, transitionReq{id: kid.ID, to: StatusFinished, kind: EventFinished, payload: json.RawMessage(`{}`)})))
		eng := e.engine()
		if rep := eng.Tick(ctx); rep.Relayed != 0 {
			t.Fatalf("tick within the grace relayed %d", rep.Relayed)
		}
		st := must(t, try(e.m.Stats(ctx)))
		if st.Joining != 1 || st.Relay != 1 || st.RelayDue != 0 {
			t.Fatalf("stats within the grace: joining %d relay %d due %d, want 1 1 0", st.Joining, st.Relay, st.RelayDue)
		}
		if got := must(t, try(e.m.Get(ctx, p.ID))); got.Status != StatusWaiting {
			t.Fatalf("parent %s before the relay", got.Status)
		}
		e.clock.Advance(relayGrace + time.Second)
		if st := must(t, try(e.m.Stats(ctx))); st.RelayDue != 1 {
			t.Fatalf("stats after the grace: relay due %d, want 1", st.RelayDue)
		}
		if rep := eng.Tick(ctx); rep.Relayed != 1 || rep.Err != nil {
			t.Fatalf("tick after the grace: %+v", rep)
		}
		if st := must(t, try(e.m.Stats(ctx))); st.Joining != 0 || st.Relay != 0 {
			t.Fatalf("stats after the tick: joining %d relay %d, want 0 0", st.Joining, st.Relay)
		}
		if got := must(t, try(e.m.Get(ctx, p.ID))); got.Status != StatusRunning || summaryOf(t, got).Finished != 1 {
			t.Fatalf("parent %s state %s after the tick", got.Status, got.State)
		}
		// Driven again (two engines at once): counted once.
		if done, err := e.store.deliverOutcome(ctx, kid.ID, nil); err != nil || done {
			t.Fatalf("a second delivery: dropped the entry %v, %v; want false (the tick dropped it)", done, err)
		}
		if got := must(t, try(e.m.Get(ctx, p.ID))); summaryOf(t, got).Finished != 1 {
			t.Fatalf("a second delivery counted again: %s", got.State)
		}
		res := e.client.HGet(ctx, e.store.keys.kidResults(p.ID), "#finished").Val()
		if res != "1" {
			t.Fatalf("#finished = %q after two deliveries", res)
		}
	})
}

func TestPruneKeepsAChildWhoseOutcomeIsUndelivered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kid := e.childrenOf(t, p.ID, 1, "")[0]
		broken := e.reopenStore(e.client)
		broken.noRelay = true
		must(t, try(broken.transition(ctx, transitionReq{id: kid.ID, to: StatusFinished, kind: EventFinished, payload: json.RawMessage(`{}`)})))
		e.clock.Advance(time.Hour)
		if n := must(t, try(e.m.PruneTerminalFlows(ctx, time.Minute))); n != 0 {
			t.Fatalf("pruned %d flows with an outcome undelivered", n)
		}
		e.engine().Tick(ctx)
		must(t, try(e.m.Finish(ctx, p.ID, nil)))
		e.clock.Advance(time.Hour)
		if n := must(t, try(e.m.PruneTerminalFlows(ctx, time.Minute))); n != 2 {
			t.Fatalf("pruned %d, want the parent and its child", n)
		}
		if n := e.client.Exists(ctx, e.store.keys.kids(p.ID), e.store.keys.kidResults(p.ID)).Val(); n != 0 {
			t.Fatalf("%d children keys left after the parent's prune", n)
		}
	})
}

func TestListChildrenPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kids := e.childrenOf(t, p.ID, 25, "")
		seen := map[uuid.UUID]int{}
		cursor := ""
		for pages := 0; ; pages++ {
			page, next, err := e.m.ListChildren(ctx, p.ID, WithLimit(10), WithCursor(cursor))
			if err != nil || pages > 3 {
				t.Fatalf("page %d: %v", pages, err)
			}
			for _, c := range page {
				seen[c.ID]++
			}
			if next == "" {
				break
			}
			cursor = next
		}
		for i, k := range kids {
			if seen[k.ID] != 1 {
				t.Fatalf("child %d seen %d times", i, seen[k.ID])
			}
		}
		if _, _, err := e.m.ListChildren(ctx, p.ID, WithCursor("x")); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("bad cursor: %v", err)
		}
	})
}

func TestVerifyRepairsAParentStuckOnItsChildren(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kids := e.childrenOf(t, p.ID, 4, ParentCloseAbandon)
		must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{}))))
		// 0: gone, deleted by hand.
		gone := kids[0].ID
		if err := e.client.Del(ctx, e.store.keys.flow(gone)).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Del(ctx, e.store.keys.events(gone)).Err(); err != nil {
			t.Fatal(err)
		}
		// 1: ended, its relay entry lost.
		broken := e.reopenStore(e.client)
		broken.noRelay = true
		must(t, try(broken.transition(ctx, transitionReq{id: kids[1].ID, to: StatusFinished, kind: EventFinished, payload: json.RawMessage(`{}`)})))
		if err := e.client.ZRem(ctx, e.store.keys.relay(e.store.keys.shardOf(kids[1].ID)), "d "+kids[1].ID.String()).Err(); err != nil {
			t.Fatal(err)
		}
		// 2: names another parent, written by hand.
		if err := e.client.HSet(ctx, e.store.keys.flow(kids[2].ID), "parent", uuid.NewString()).Err(); err != nil {
			t.Fatal(err)
		}
		// 3: healthy, still running.
		rep := must(t, try(e.m.Verify(ctx)))
		want := map[fsck.Kind]uuid.UUID{fsck.ChildMissing: gone, fsck.ChildUndelivered: kids[1].ID, fsck.ChildElsewhere: kids[2].ID}
		n := 0
		for _, pr := range rep.Problems {
			if pr.Kind == fsck.StaleIndexEntry && pr.FlowID == gone.String() {
				continue // the index entries of the flow deleted by hand
			}
			n++
			if want[pr.Kind].String() != pr.Member || pr.FlowID != p.ID.String() {
				t.Fatalf("problem %+v, want %v", pr, want)
			}
		}
		if n != len(want) {
			t.Fatalf("Verify: %+v, want %v", rep.Problems, want)
		}
		must(t, try(e.m.Verify(ctx, fsck.WithRepair())))
		got := must(t, try(e.m.Get(ctx, p.ID)))
		if got.Status != StatusWaiting {
			t.Fatalf("parent %s after the repair, want still waiting on child 3", got.Status)
		}
		must(t, try(e.m.Finish(ctx, kids[3].ID, nil)))
		got = must(t, try(e.m.Get(ctx, p.ID)))
		sum := summaryOf(t, got)
		if got.Status != StatusRunning || sum.Failed != 2 || sum.Finished != 2 || sum.Why != "settled" {
			t.Fatalf("parent %s summary %+v, want running with 2 failed (repaired) and 2 finished", got.Status, sum)
		}
		mustVerify(t, e)
	})
}
