package taskflow

import (
	"errors"
	"strings"
	"testing"
)

// TestLimitsRefuseOversizedInput: every stored string and the key count
// of one patch are bounded; a refusal writes nothing (issue 11 items 9
// and 11, first part).
func TestLimitsRefuseOversizedInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}
		f := must(t, try(e.m.CreateMirrored(ctx, in)))
		big := strings.Repeat("x", MaxTextBytes+1)
		label := strings.Repeat("x", MaxLabelBytes+1)
		manyKeys := map[string]int{}
		for i := 0; i <= MaxPatchKeys; i++ {
			manyKeys["k"+itoa(i)] = i
		}
		before := e.dump()
		for name, call := range map[string]func() error{
			"goal": func() error {
				_, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "c", Goal: big, OwnerSessionKey: "o"})
				return err
			},
			"controller": func() error {
				_, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: label, Goal: "g", OwnerSessionKey: "o"})
				return err
			},
			"owner": func() error {
				_, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: label})
				return err
			},
			"step": func() error { _, err := e.m.UpdateState(ctx, f.ID, nil, label); return err },
			"run id": func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: label, Status: StepRunning})
				return err
			},
			"task": func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Task: big, Status: StepRunning})
				return err
			},
			"reason":     func() error { _, err := e.m.Fail(ctx, f.ID, big); return err },
			"patch keys": func() error { _, err := e.m.UpdateState(ctx, f.ID, manyKeys, ""); return err },
		} {
			if err := call(); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("%s over its limit: %v", name, err)
			}
		}
		after := e.dump()
		if len(after) != len(before) {
			t.Fatal("a refused call changed Redis")
		}
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("a refused call changed %s", k)
			}
		}
	})
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}
