// Package childview reads what `taskflow show` and the dashboard say of
// a parent flow's join on its children (taskflow.WaitChildren): what it
// needs and how far its children have come.
package childview

import (
	"context"
	"fmt"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// countPage is how many children one ListChildren call of Progress
// reads (the library's most).
const countPage = 1000

// Join is a parent's join on its children and how far it has come. The
// counts are of the outcomes the parent has (taskflow.Child.Ended), as
// the join itself counts them: a child that ended but whose outcome is
// still on its way (the relay) is pending.
type Join struct {
	// Need is how many children must finish; 0 means all of them.
	Need     int  `json:"need"`
	FailFast bool `json:"fail_fast"`
	// Deadline is when the engine's tick resumes the parent anyway; zero
	// when none.
	Deadline  time.Time `json:"deadline,omitzero"`
	Total     int       `json:"total"`
	Finished  int       `json:"finished"`
	Failed    int       `json:"failed"`
	Cancelled int       `json:"cancelled"`
	Pending   int       `json:"pending"`
}

// NeedText says what the join needs: "all 5", "2 of 5".
func (j *Join) NeedText() string {
	if j.Need <= 0 {
		return fmt.Sprintf("all %d", j.Total)
	}
	return fmt.Sprintf("%d of %d", j.Need, j.Total)
}

// Progress returns f's join and how far its children have come, nil
// when f does not wait on its children. It reads the parent's counts
// through Manager.Explain (two round trips, whatever the number of
// children).
func Progress(ctx context.Context, m *taskflow.Manager, f *taskflow.Flow) (*Join, error) {
	if f.Status != taskflow.StatusWaiting || len(f.Wait) == 0 {
		return nil, nil
	}
	w, err := taskflow.ParseWaitCondition(f.Wait)
	if err != nil || w.Kind != taskflow.WaitKindChildren {
		return nil, nil
	}
	x, err := m.Explain(ctx, f.ID)
	if err != nil {
		return nil, fmt.Errorf("counting the children of %s: %w", f.ID, err)
	}
	if x.Code != "waiting_children" {
		return progress(ctx, m, f, countPage) // it moved on meanwhile
	}
	fact := func(k string) int {
		n, _ := x.Facts[k].(int)
		return n
	}
	return &Join{Need: w.Need, FailFast: w.FailFast, Deadline: w.At, Total: fact("children"),
		Finished: fact("finished"), Failed: fact("failed"), Cancelled: fact("cancelled"), Pending: fact("pending")}, nil
}

// progress counts f's children by reading every one through
// ListChildren, pages of size: what Progress falls back on when the
// parent moved on between the reads.
func progress(ctx context.Context, m *taskflow.Manager, f *taskflow.Flow, size int) (*Join, error) {
	if f.Status != taskflow.StatusWaiting || len(f.Wait) == 0 {
		return nil, nil
	}
	w, err := taskflow.ParseWaitCondition(f.Wait)
	if err != nil || w.Kind != taskflow.WaitKindChildren {
		return nil, nil
	}
	j := &Join{Need: w.Need, FailFast: w.FailFast, Deadline: w.At}
	cursor := ""
	for {
		opts := []taskflow.ListOption{taskflow.WithLimit(size)}
		if cursor != "" {
			opts = append(opts, taskflow.WithCursor(cursor))
		}
		page, next, err := m.ListChildren(ctx, f.ID, opts...)
		if err != nil {
			return nil, fmt.Errorf("counting the children of %s: %w", f.ID, err)
		}
		for _, c := range page {
			j.count(c)
		}
		if next == "" {
			return j, nil
		}
		cursor = next
	}
}

// count adds one child to the counts.
func (j *Join) count(c taskflow.Child) {
	j.Total++
	if !c.Ended {
		j.Pending++
		return
	}
	switch c.Status {
	case taskflow.StatusFinished:
		j.Finished++
	case taskflow.StatusFailed:
		j.Failed++
	case taskflow.StatusCancelled:
		j.Cancelled++
	default:
		j.Pending++
	}
}
