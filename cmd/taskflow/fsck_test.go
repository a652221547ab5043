package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/fsck"
)

// fsckJSON runs fsck --json (plus args), wants exit status code and
// decodes the report.
func (e *testEnv) fsckJSON(code int, args ...string) (*fsck.Report, result) {
	e.t.Helper()
	r := e.run(append([]string{"fsck", "--json"}, args...)...).wantCode(e.t, code)
	var rep fsck.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		e.t.Fatalf("stdout is not a report: %v\n%s", err, r.stdout)
	}
	return &rep, r
}

// problem returns the report's problem of kind for flowID, or nil.
func problem(rep *fsck.Report, kind fsck.Kind, flowID string) *fsck.Problem {
	for i, p := range rep.Problems {
		if p.Kind == kind && p.FlowID == flowID {
			return &rep.Problems[i]
		}
	}
	return nil
}

func TestFsck(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		created := e.create(ownerA, "created")
		f := e.running(ownerA, "to be corrupted")
		e.waiting(ownerB, taskflow.WaitTimer(time.Now().Add(time.Hour)))

		r := e.run("fsck").wantCode(t, 0)
		if !strings.Contains(r.stdout, "shards 16, flows 3, keys ") || !strings.Contains(r.stdout, "no problems") ||
			strings.Contains(r.stdout, "KIND") || r.stderr != "" {
			t.Fatalf("clean fsck:\nstdout %q\nstderr %q", r.stdout, r.stderr)
		}
		rep, _ := e.fsckJSON(0)
		if !rep.OK() || rep.Flows != 3 || rep.Shards != 16 || rep.Keys == 0 || rep.Problems == nil {
			t.Fatalf("clean report: %+v", rep)
		}

		// Take the running flow out of its status index behind the
		// library's back. The shard is the library's business: find the
		// index that holds the flow.
		removed := 0
		for _, k := range e.scanKeys(e.prefix + ":*:status:running") {
			n, err := e.client.ZRem(ctx, k, f.ID.String()).Result()
			if err != nil {
				t.Fatal(err)
			}
			removed += int(n)
		}
		if removed != 1 {
			t.Fatalf("removed %d index entries, want 1", removed)
		}

		r = e.run("fsck").wantCode(t, 1)
		r.wantOneLineError(t, "fsck found 1 problem;")
		for _, want := range []string{"1 problem", "KIND", "FLOW", "KEY", "DETAIL", "REPAIRED",
			"status_index_missing", f.ID.String(), ":status:running", "not in its status index", " no"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("fsck output lacks %q:\n%s", want, r.stdout)
			}
		}
		rep, _ = e.fsckJSON(1)
		p := problem(rep, "status_index_missing", f.ID.String())
		if len(rep.Problems) != 1 || p == nil || p.Repaired || !strings.HasSuffix(p.Key, ":status:running") {
			t.Fatalf("report: %+v", rep)
		}
		wantIDs(t, e, []string{"list", "--status", "running"})

		r = e.run("fsck", "--repair").wantCode(t, 0)
		if !strings.Contains(r.stdout, "1 problem, 1 repaired") || !strings.Contains(r.stdout, " yes") || r.stderr != "" {
			t.Fatalf("repair:\nstdout %q\nstderr %q", r.stdout, r.stderr)
		}
		if rep, _ = e.fsckJSON(0); !rep.OK() {
			t.Fatalf("after repair: %+v", rep)
		}
		wantIDs(t, e, []string{"list", "--status", "running"}, f)

		// A problem in a flow record is reported but never repaired.
		flowKeys := e.scanKeys(e.prefix + ":*:flow:" + created.ID.String())
		if len(flowKeys) != 1 {
			t.Fatalf("flow keys %v", flowKeys)
		}
		if err := e.client.HSet(ctx, flowKeys[0], "rev", "99").Err(); err != nil {
			t.Fatal(err)
		}
		rep, r = e.fsckJSON(1, "--repair")
		r.wantJSONError(t, "1 of 1 problem could not be repaired")
		if p := problem(rep, "event_revision", created.ID.String()); len(rep.Problems) != 1 || p == nil || p.Repaired {
			t.Fatalf("report: %+v", rep)
		}
		if err := e.client.HSet(ctx, flowKeys[0], "rev", "0").Err(); err != nil {
			t.Fatal(err)
		}
		e.run("fsck").wantCode(t, 0)
	})
}

// A schedule problem names its schedule in the table's MEMBER column:
// the key alone (the names or due index) says not which schedule.
func TestFsckNamesTheSchedule(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		e.run("schedule", "create", "fsck/nightly", "--cron", "0 3 * * *",
			"--controller", "kate/report", "--goal", "report", "--owner", ownerA).wantCode(t, 0)
		e.run("fsck").wantCode(t, 0)
		if err := e.client.ZRem(ctx, e.prefix+":{sched}:names", "fsck/nightly").Err(); err != nil {
			t.Fatal(err)
		}
		r := e.run("fsck").wantCode(t, 1)
		for _, want := range []string{"MEMBER", "schedule_unindexed", "fsck/nightly", ":{sched}:names"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("fsck output lacks %q:\n%s", want, r.stdout)
			}
		}
		r = e.run("fsck", "--repair").wantCode(t, 0)
		if !strings.Contains(r.stdout, "fsck/nightly") || !strings.Contains(r.stdout, " yes") {
			t.Fatalf("repair:\n%s", r.stdout)
		}
		e.run("fsck").wantCode(t, 0)
	})
}
