package taskflow

import "testing"

func TestCompareAndSetOption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		_, err := e.m.StartRunning(ctx, f.ID, IfRevision(5))
		wantErr(t, err, ErrRevisionMismatch)
		f = must(t, try(e.m.StartRunning(ctx, f.ID, IfRevision(0))))
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(0))
		wantErr(t, err, ErrRevisionMismatch)
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(1))))
	})
}
