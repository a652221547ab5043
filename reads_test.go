package taskflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestListEventsLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i := 0; i < 5; i++ {
			must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
		}
		if evs := must(t, try(e.m.ListEvents(ctx, f.ID, -1))); len(evs) != 0 {
			t.Fatalf("negative limit returned %d", len(evs))
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 3)))
		if len(evs) != 3 || evs[0].ID != "7" || evs[2].ID != "5" {
			t.Fatalf("limit 3: %+v", evs)
		}
		if evs := must(t, try(e.m.ListEvents(ctx, uuid.New(), 10))); len(evs) != 0 {
			t.Fatalf("unknown flow has events")
		}
	})
}

func TestEventCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i := 0; i < 10; i++ {
			f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 100)))
		if len(evs) != 4 || evs[0].ID != "12" || evs[0].Revision != f.Revision {
			t.Fatalf("capped log: %d events, newest %+v", len(evs), evs[0])
		}
	}, WithLimits(Limits{EventsPerFlow: 4}))
}

func TestMirroredStepsUpsertAndDuplicate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		if f.Status != StatusRunning || f.Revision != 1 {
			t.Fatalf("mirrored: %+v", f)
		}
		for i := 0; i < 3; i++ {
			must(t, try(e.m.RecordStepObservation(ctx, StepObservation{
				FlowID: f.ID, RunID: fmt.Sprintf("cron-%d", i), Task: fmt.Sprintf("task-%d", i),
				Status: StepSucceeded, Result: map[string]int{"idx": i},
				ChildSessionKey: "agent:kate:session:child",
			})))
		}
		steps := must(t, try(e.m.ListSteps(ctx, f.ID)))
		if len(steps) != 3 {
			t.Fatalf("steps: %d", len(steps))
		}
		first := steps[0]
		if first.CreatedAt.IsZero() || first.UpdatedAt.IsZero() || first.ID == uuid.Nil {
			t.Fatalf("step fields not read back: %+v", first)
		}
		for i, s := range steps {
			if s.RunID != fmt.Sprintf("cron-%d", i) || string(s.Result) != fmt.Sprintf(`{"idx":%d}`, i) || s.Runtime != RuntimeMirrored {
				t.Fatalf("step %d: %+v", i, s)
			}
		}
		// Upsert in place: same id, child kept, task/status/result replaced.
		up := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{
			FlowID: f.ID, RunID: "cron-0", Task: "task-0b", Status: StepFailed, Result: "boom",
		})))
		if up.ID != first.ID || up.ChildSessionKey != "agent:kate:session:child" || up.Task != "task-0b" ||
			up.Status != StepFailed || string(up.Result) != `"boom"` || !up.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("upsert: %+v (first %+v)", up, first)
		}
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 3 {
			t.Fatalf("upsert added a step: %d", n)
		}
		ev := must(t, try(e.m.ListEvents(ctx, f.ID, 1)))[0]
		if ev.Kind != "step_observed" || string(ev.Payload) != `{"run_id":"cron-0","runtime":"mirrored","status":"failed"}` {
			t.Fatalf("event %+v %s", ev, ev.Payload)
		}
		// Duplicate run id through the store.
		err := e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "cron-1", Runtime: RuntimeManaged, Status: StepPending})
		wantErr(t, err, ErrDuplicateStep)
		must(t, try(0, e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "manual-1", Runtime: RuntimeManaged, Status: StepPending, Task: "t"})))
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 4 {
			t.Fatalf("insert: %d steps", n)
		}
		// Unknown flow.
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: uuid.New(), RunID: "x", Status: StepRunning})
		wantErr(t, err, ErrNotFound)
		err = e.store.InsertStep(ctx, &FlowStep{FlowID: uuid.New(), RunID: "x", Runtime: RuntimeManaged, Status: StepPending})
		wantErr(t, err, ErrNotFound)
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "x", Status: "weird"})
		wantErr(t, err, ErrInvalidData)
	})
}

// The step_observed event names the step's runtime, managed or mirrored.
func TestStepObservedEventNamesRuntime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.InsertStep(e.ctx, &FlowStep{FlowID: f.ID, RunID: "m1", Runtime: RuntimeManaged, Task: "t", Status: StepPending}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			run  string
			want StepRuntime
		}{{"m1", RuntimeManaged}, {"new", RuntimeMirrored}} {
			st, err := e.m.RecordStepObservation(e.ctx, StepObservation{FlowID: f.ID, RunID: c.run, Task: "t", Status: StepRunning})
			if err != nil {
				t.Fatal(err)
			}
			if st.Runtime != c.want {
				t.Fatalf("step %s: runtime %q, want %q", c.run, st.Runtime, c.want)
			}
			evs, err := e.m.ListEvents(e.ctx, f.ID, 1)
			if err != nil || len(evs) != 1 || evs[0].Kind != EventStepObserved {
				t.Fatalf("events: %+v %v", evs, err)
			}
			var p struct {
				RunID   string `json:"run_id"`
				Runtime string `json:"runtime"`
				Status  string `json:"status"`
			}
			if err := json.Unmarshal(evs[0].Payload, &p); err != nil {
				t.Fatalf("payload %s: %v", evs[0].Payload, err)
			}
			if p.Runtime != string(c.want) || p.RunID != c.run || p.Status != string(StepRunning) {
				t.Fatalf("step %s: payload %s, want runtime %q", c.run, evs[0].Payload, c.want)
			}
		}
		mustVerify(t, e)
	})
}

// A flow holds at most defaultStepsPerFlow steps: a new run id beyond it is
// refused by both ways of adding a step and writes nothing; a step
// already recorded is still updated.
func TestStepsPerFlowAreBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		// Fill to the cap through the store's InsertStep (one script each,
		// pipelined by nothing: the cap is what is tested, not speed).
		for i := 0; i < defaultStepsPerFlow; i++ {
			if err := e.store.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: f.ID, Runtime: RuntimeManaged,
				RunID: fmt.Sprintf("run-%d", i), Status: StepSucceeded}); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		before := e.dump()
		_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "one-more", Status: StepRunning})
		wantErr(t, err, ErrInvalidData)
		err = e.store.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: f.ID, Runtime: RuntimeManaged, RunID: "one-more", Status: StepRunning})
		wantErr(t, err, ErrInvalidData)
		e.sameDump(t, before, "a step over the cap")
		// An observation of a recorded step still lands.
		st := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "run-7", Status: StepFailed})))
		if st.Status != StepFailed {
			t.Fatalf("step %+v", st)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestStepsRefusedOnFinishedAndCancelPending: a terminal or
// cancel-requested flow takes no more steps, and the refusal writes
// nothing.
func TestStepsRefusedOnFinishedAndCancelPending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}
		done := must(t, try(e.m.CreateMirrored(ctx, in)))
		must(t, try(e.m.Finish(ctx, done.ID, nil)))
		pending := must(t, try(e.m.CreateMirrored(ctx, in)))
		must(t, try(e.m.RequestCancel(ctx, pending.ID)))
		for _, c := range []struct {
			f    *Flow
			want error
		}{{done, ErrAlreadyTerminal}, {pending, ErrCancelPending}} {
			before := e.dump()
			_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: c.f.ID, RunID: "late", Status: StepRunning})
			if !errors.Is(err, c.want) {
				t.Fatalf("step on %s flow: %v, want %v", c.f.ID, err, c.want)
			}
			after := e.dump()
			if len(after) != len(before) {
				t.Fatalf("a refused step changed Redis")
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("a refused step changed %s", k)
				}
			}
		}
	})
}

// ListByOwner and ListByStatus without options return every flow, across
// pages; with options they return one page.
func TestListWithoutOptionsReturnsAll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// More than one internal page of maxListLimit.
		const n = maxListLimit + 25
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					if _, err := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		all, err := e.m.ListByOwner(e.ctx, "o")
		if err != nil || len(all) != n {
			t.Fatalf("ListByOwner: %d flows (%v), want %d", len(all), err, n)
		}
		for _, f := range all {
			seen[f.ID.String()] = true
		}
		if len(seen) != n {
			t.Fatalf("ListByOwner returned %d distinct flows, want %d", len(seen), n)
		}
		byStatus, err := e.m.ListByStatus(e.ctx, StatusCreated)
		if err != nil || len(byStatus) != n {
			t.Fatalf("ListByStatus: %d flows (%v), want %d", len(byStatus), err, n)
		}
		page, err := e.m.ListByOwner(e.ctx, "o", WithLimit(10))
		if err != nil || len(page) != 10 {
			t.Fatalf("ListByOwner with a limit: %d flows (%v), want 10", len(page), err)
		}
	})
}

func TestListPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		owner := "agent:x:session:{odd} key"
		var ids []uuid.UUID
		for i := 0; i < 23; i++ {
			in := seedInput()
			in.OwnerSessionKey = owner
			f := must(t, try(e.m.CreateManaged(ctx, in)))
			ids = append(ids, f.ID)
			if i%3 != 0 {
				e.clock.Advance(time.Millisecond) // some ties on purpose
			}
		}
		other := seedInput()
		must(t, try(e.m.CreateManaged(ctx, other)))
		var seen []uuid.UUID
		cursor := ""
		for pages := 0; ; pages++ {
			p := must(t, try(e.m.ListByOwnerPage(ctx, owner, WithLimit(5), WithCursor(cursor))))
			for _, f := range p.Flows {
				seen = append(seen, f.ID)
			}
			if p.Next == "" {
				break
			}
			cursor = p.Next
			if pages > 10 {
				t.Fatal("too many pages")
			}
		}
		if len(seen) != 23 {
			t.Fatalf("saw %d flows", len(seen))
		}
		// Newest created first: ids were created in order.
		for i := 1; i < len(seen); i++ {
			a := must(t, try(e.m.Get(ctx, seen[i-1])))
			b := must(t, try(e.m.Get(ctx, seen[i])))
			if a.CreatedAt.Before(b.CreatedAt) {
				t.Fatalf("owner list not newest first at %d", i)
			}
		}
		uniq := map[uuid.UUID]bool{}
		for _, id := range seen {
			uniq[id] = true
		}
		if len(uniq) != 23 {
			t.Fatalf("owner pages repeated flows: %d distinct", len(uniq))
		}
		// Status list: flows leave "created" between pages; none is seen
		// twice and none that stayed is skipped.
		p := must(t, try(e.m.ListByStatusPage(ctx, StatusCreated, WithLimit(7))))
		got := map[uuid.UUID]int{}
		for _, f := range p.Flows {
			got[f.ID]++
		}
		for _, id := range ids[10:15] {
			e.clock.Advance(time.Millisecond)
			must(t, try(e.m.StartRunning(ctx, id)))
		}
		for p.Next != "" {
			p = must(t, try(e.m.ListByStatusPage(ctx, StatusCreated, WithLimit(7), WithCursor(p.Next))))
			for _, f := range p.Flows {
				got[f.ID]++
				if f.Status != StatusCreated {
					t.Fatalf("status list returned a %s flow", f.Status)
				}
			}
		}
		for id, n := range got {
			if n > 1 {
				t.Fatalf("flow %s seen %d times", id, n)
			}
		}
		stayed := 0
		for _, id := range ids {
			if f := must(t, try(e.m.Get(ctx, id))); f.Status == StatusCreated && got[id] == 0 {
				t.Fatalf("flow %s stayed created but was skipped", id)
			} else if f.Status == StatusCreated {
				stayed++
			}
		}
		if stayed != 18 {
			t.Fatalf("stayed %d", stayed)
		}
		_, err := e.m.ListByStatus(ctx, "bogus")
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.ListByOwner(ctx, owner, WithCursor("garbage"))
		wantErr(t, err, ErrInvalidData)
		rec := must(t, try(e.m.ListRecent(ctx, nil, WithLimit(3))))
		if len(rec.Flows) != 3 || rec.Flows[0].ID != ids[14] {
			t.Fatalf("recent: first %v", rec.Flows[0].ID)
		}
	})
}

// TestListPagingTies: flows that share one millisecond page correctly in
// both directions, and a late page costs what an early one does.
func TestListPagingTies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const n = 300
		owner := "agent:ties:session:1"
		for i := 0; i < n; i++ { // the fake clock stands still: all ties
			in := seedInput()
			in.OwnerSessionKey = owner
			must(t, try(e.m.CreateManaged(e.ctx, in)))
		}
		walk := func(list func(cursor string) *FlowPage, desc bool) int {
			seen := map[uuid.UUID]bool{}
			last := ""
			cursor := ""
			for {
				p := list(cursor)
				for _, f := range p.Flows {
					id := f.ID.String()
					if seen[f.ID] {
						t.Fatalf("flow %s seen twice", id)
					}
					seen[f.ID] = true
					if last != "" && (id < last) != desc {
						t.Fatalf("order broken: %s after %s (desc %v)", id, last, desc)
					}
					last = id
				}
				if p.Next == "" {
					return len(seen)
				}
				cursor = p.Next
			}
		}
		got := walk(func(c string) *FlowPage {
			return must(t, try(e.m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(7), WithCursor(c))))
		}, false)
		if got != n {
			t.Fatalf("status walk saw %d of %d", got, n)
		}
		got = walk(func(c string) *FlowPage {
			return must(t, try(e.m.ListByOwnerPage(e.ctx, owner, WithLimit(11), WithCursor(c))))
		}, true)
		if got != n {
			t.Fatalf("owner walk saw %d of %d", got, n)
		}
		// A page deep into the ties is still one pipeline for the index
		// and one for the flows.
		counter := &commandCounter{}
		c := e.b.client(t)
		c.AddHook(counter)
		m := NewManager(e.reopenStore(c))
		p := must(t, try(m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(10))))
		for i := 0; i < 20; i++ {
			p = must(t, try(m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(10), WithCursor(p.Next))))
		}
		counter.reset()
		must(t, try(m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(10), WithCursor(p.Next))))
		if got := counter.count(); got != e.store.Shards()+10 {
			t.Fatalf("a late page sent %d commands, want %d (one per shard, one per flow)", got, e.store.Shards()+10)
		}
	})
}
