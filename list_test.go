package taskflow

import (
	"sync"
	"testing"
)

// ListByOwner and ListByStatus without options return every flow, across
// pages; with options they return one page.
func TestListWithoutOptionsReturnsAll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// More than one internal page of MaxListLimit.
		const n = MaxListLimit + 25
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
