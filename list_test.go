package taskflow

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

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
