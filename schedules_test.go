package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// scheduleInput is an every-d schedule of seedInput's flow with an
// object state.
func scheduleInput(name string, every time.Duration) ScheduleInput {
	f := seedInput()
	f.OwnerSessionKey = "agent:kate:session:" + name
	f.State = map[string]any{"feed": "news"}
	return ScheduleInput{Name: name, Every: every, Flow: f}
}

// fireFlow is the flow id of schedule sc's fire at at.
func (e *env) fireFlow(sc *Schedule, at time.Time) uuid.UUID {
	return e.store.IdempotentFlowID(fireKey(sc.ID, at))
}

// mustFlowExists fails unless the flow of sc's fire at at exists.
func (e *env) fireExists(t *testing.T, sc *Schedule, at time.Time) bool {
	t.Helper()
	_, err := e.m.Get(e.ctx, e.fireFlow(sc, at))
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// endFlow runs and finishes flow id.
func (e *env) endFlow(t *testing.T, id uuid.UUID) {
	t.Helper()
	must(t, try(e.m.StartRunning(e.ctx, id)))
	must(t, try(e.m.Finish(e.ctx, id, nil)))
}

// scheduleFlows counts the flows of the test's flow space.
func (e *env) flowCount(t *testing.T) int64 {
	t.Helper()
	st := must(t, try(e.m.Stats(e.ctx)))
	return st.Total
}

func TestScheduleEveryFires(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		start := e.clock.Now()
		sc := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("feed/check", time.Minute))))
		if sc.ID == uuid.Nil || sc.Revision != 1 || !sc.NextFire.Equal(start.Add(time.Minute)) || sc.Overlap != OverlapSkip || sc.CatchUp != CatchUpLast {
			t.Fatalf("created %+v", sc)
		}
		rep := eng.TickAt(e.ctx, start.Add(59*time.Second))
		if rep.Fired != 0 || rep.Err != nil {
			t.Fatalf("early tick %+v", rep)
		}
		at := start.Add(time.Minute)
		e.clock.Advance(time.Minute)
		rep = eng.TickAt(e.ctx, at)
		if rep.Fired != 1 || rep.Skipped != 0 || rep.Err != nil {
			t.Fatalf("due tick %+v (%v)", rep, rep.Err)
		}
		f := must(t, try(e.m.Get(e.ctx, e.fireFlow(sc, at))))
		st := stateOf(t, f)
		tag, _ := st["schedule"].(map[string]any)
		if st["feed"] != "news" || tag["name"] != "feed/check" || tag["id"] != sc.ID.String() || tag["at"] != at.UTC().Format(time.RFC3339Nano) {
			t.Fatalf("state %v", st)
		}
		if f.ControllerID != seedInput().ControllerID || f.Status != StatusCreated {
			t.Fatalf("flow %+v", f)
		}
		// A second tick at the same time, another engine: nothing more.
		rep = e.engine().TickAt(e.ctx, at)
		if rep.Fired != 0 || rep.Err != nil {
			t.Fatalf("repeat tick %+v", rep)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "feed/check", 3)))
		if got.Fired != 1 || got.LastFire == nil || got.LastFire.FlowID != f.ID || !got.NextFire.Equal(at.Add(time.Minute)) {
			t.Fatalf("schedule %+v", got)
		}
		if len(got.Upcoming) != 3 || !got.Upcoming[2].Equal(at.Add(3*time.Minute)) {
			t.Fatalf("upcoming %v", got.Upcoming)
		}
		if len(got.Recent) != 1 || got.Recent[0].Outcome != fireFired || got.Recent[0].FlowID != f.ID || !got.Recent[0].At.Equal(at) {
			t.Fatalf("recent %+v", got.Recent)
		}
		if n := e.flowCount(t); n != 1 {
			t.Fatalf("%d flows", n)
		}
		stats := must(t, try(e.m.Stats(e.ctx)))
		if stats.Schedules != 1 || stats.ScheduleFires != 1 || stats.SchedulesDue != 0 || stats.ScheduleLag != 0 {
			t.Fatalf("stats %+v", stats)
		}
		e.clock.Advance(90 * time.Second)
		stats = must(t, try(e.m.Stats(e.ctx)))
		if stats.SchedulesDue != 1 || stats.ScheduleLag != 30*time.Second {
			t.Fatalf("stats when due %+v", stats)
		}
	})
}

func TestScheduleCRUD(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		start := e.clock.Now()
		in := scheduleInput("report", time.Hour)
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		_, err := e.m.CreateSchedule(e.ctx, in)
		wantErr(t, err, ErrAlreadyExists)
		wantScheduleMessage(t, err, `schedule "report" exists`)

		// Pause: no fires, not due, counted paused.
		p := must(t, try(e.m.PauseSchedule(e.ctx, "report", "maintenance")))
		if !p.Paused || p.Note != "maintenance" || p.Revision != 2 || !p.NextFire.IsZero() {
			t.Fatalf("paused %+v", p)
		}
		if st := must(t, try(e.m.Stats(e.ctx))); st.SchedulesPaused != 1 || st.Schedules != 1 {
			t.Fatalf("stats %+v", st)
		}
		e.clock.Advance(3 * time.Hour)
		if rep := eng.TickAt(e.ctx, e.clock.Now()); rep.Fired+rep.Skipped != 0 || rep.Err != nil {
			t.Fatalf("paused tick %+v", rep)
		}
		// Resume: next fire after now, the paused ones not made.
		r := must(t, try(e.m.ResumeSchedule(e.ctx, "report")))
		if r.Paused || r.Note != "" || !r.NextFire.Equal(start.Add(4*time.Hour)) {
			t.Fatalf("resumed %+v", r)
		}
		if st := must(t, try(e.m.Stats(e.ctx))); st.SchedulesPaused != 0 {
			t.Fatalf("stats %+v", st)
		}
		// Update with a stale revision is refused; with the right one
		// the new timing starts from now.
		in.Every = 30 * time.Minute
		_, err = e.m.UpdateSchedule(e.ctx, in, 1)
		wantErr(t, err, ErrRevisionMismatch)
		wantScheduleMessage(t, err, `schedule "report" is at revision 3, not 1`)
		u := must(t, try(e.m.UpdateSchedule(e.ctx, in, r.Revision)))
		now := e.clock.Now()
		if u.Every != 30*time.Minute || u.Revision != r.Revision+1 || !u.NextFire.After(now) || u.NextFire.After(now.Add(30*time.Minute)) {
			t.Fatalf("updated %+v (now %v)", u, now)
		}
		// List pages by name.
		for _, n := range []string{"a", "b", "c"} {
			must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput(n, time.Hour))))
		}
		var names []string
		cursor := ""
		for {
			page, next, err := e.m.ListSchedules(e.ctx, WithLimit(3), WithCursor(cursor))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range page {
				names = append(names, s.Name)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if strings.Join(names, ",") != "a,b,c,report" {
			t.Fatalf("listed %v", names)
		}
		// Delete: gone, its keys too, a new one of the name gets a new id.
		if err := e.m.DeleteSchedule(e.ctx, "report"); err != nil {
			t.Fatal(err)
		}
		err = e.m.DeleteSchedule(e.ctx, "report")
		wantErr(t, err, ErrNotFound)
		wantScheduleMessage(t, err, `schedule "report"`)
		_, err = e.m.GetSchedule(e.ctx, "report", 0)
		wantErr(t, err, ErrNotFound)
		again := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("report", time.Hour))))
		if again.ID == sc.ID {
			t.Fatal("a re-created schedule kept its id")
		}
		_, err = e.m.PauseSchedule(e.ctx, "nope", "")
		wantErr(t, err, ErrNotFound)
		// Verify reads the flow space with its schedule keys as sound.
		mustVerify(t, e)
	})
}

// A schedule's flow input carries its search attributes to every fire's
// flow, so Find lists a schedule's runs by attribute.
func TestScheduleFlowAttributes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := scheduleInput("report/acme", time.Minute)
		in.Flow.Attributes = map[string]string{"customer": "acme", "kind": "report"}
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		at := e.clock.Now().Add(time.Minute)
		e.clock.Advance(time.Minute)
		if rep := e.engine().TickAt(e.ctx, at); rep.Fired != 1 || rep.Err != nil {
			t.Fatalf("tick %+v (%v)", rep, rep.Err)
		}
		f := must(t, try(e.m.Get(e.ctx, e.fireFlow(sc, at))))
		if f.Attributes["customer"] != "acme" || f.Attributes["kind"] != "report" || len(f.Attributes) != 2 {
			t.Fatalf("fire's flow attributes %v", f.Attributes)
		}
		page := must(t, try(e.m.Find(e.ctx, Filter{Attribute: "customer=acme"})))
		if len(page.Flows) != 1 || page.Flows[0].ID != f.ID {
			t.Fatalf("Find by the schedule's attribute: %d flows", len(page.Flows))
		}
	})
}

func TestScheduleBadInput(t *testing.T) {
	e := newEnv(t, backends(t)[0])
	long := strings.Repeat("x", 201)
	cases := map[string]func(in *ScheduleInput){
		"no name":           func(in *ScheduleInput) { in.Name = "" },
		"long name":         func(in *ScheduleInput) { in.Name = long },
		"bad name":          func(in *ScheduleInput) { in.Name = "a b" },
		"brace name":        func(in *ScheduleInput) { in.Name = "a{b}" },
		"neither":           func(in *ScheduleInput) { in.Every = 0 },
		"both":              func(in *ScheduleInput) { in.Cron = "* * * * *" },
		"short every":       func(in *ScheduleInput) { in.Every = 999 * time.Millisecond },
		"sub-ms every":      func(in *ScheduleInput) { in.Every = time.Second + time.Microsecond },
		"tz with every":     func(in *ScheduleInput) { in.TimeZone = "Europe/Madrid" },
		"end before start":  func(in *ScheduleInput) { in.Start = time.Now().Add(time.Hour); in.End = time.Now() },
		"end in the past":   func(in *ScheduleInput) { in.End = time.Now().Add(-time.Hour) },
		"negative jitter":   func(in *ScheduleInput) { in.Jitter = -time.Second },
		"jitter over 1h":    func(in *ScheduleInput) { in.Every = 3 * time.Hour; in.Jitter = 2 * time.Hour },
		"jitter over every": func(in *ScheduleInput) { in.Jitter = 2 * time.Minute },
		"overlap":           func(in *ScheduleInput) { in.Overlap = "sometimes" },
		"catch-up":          func(in *ScheduleInput) { in.CatchUp = "most" },
		"window":            func(in *ScheduleInput) { in.CatchUp = CatchUpAll; in.CatchUpWindow = 8 * 24 * time.Hour },
		"negative window":   func(in *ScheduleInput) { in.CatchUp = CatchUpAll; in.CatchUpWindow = -time.Hour },
		"max":               func(in *ScheduleInput) { in.CatchUp = CatchUpAll; in.CatchUpMax = 1001 },
		"window not all":    func(in *ScheduleInput) { in.CatchUpWindow = time.Hour },
		"max not all":       func(in *ScheduleInput) { in.CatchUpMax = 3 },
		"note":              func(in *ScheduleInput) { in.Note = strings.Repeat("n", 1025) },
		"idempotency key":   func(in *ScheduleInput) { in.Flow.IdempotencyKey = "k" },
		"no controller":     func(in *ScheduleInput) { in.Flow.ControllerID = "" },
		"no goal":           func(in *ScheduleInput) { in.Flow.Goal = " " },
		"no owner":          func(in *ScheduleInput) { in.Flow.OwnerSessionKey = "" },
		"array state":       func(in *ScheduleInput) { in.Flow.State = []int{1} },
		"bad json state":    func(in *ScheduleInput) { in.Flow.State = json.RawMessage(`{`) },
		"schedule key":      func(in *ScheduleInput) { in.Flow.State = map[string]any{"schedule": 1} },
		"attribute name":    func(in *ScheduleInput) { in.Flow.Attributes = map[string]string{"Customer": "acme"} },
		"attribute value":   func(in *ScheduleInput) { in.Flow.Attributes = map[string]string{"customer": ""} },
		"concurrency key":   func(in *ScheduleInput) { in.Flow.Concurrency = []string{"a b"} },
		"five keys":         func(in *ScheduleInput) { in.Flow.Concurrency = []string{"a", "b", "c", "d", "e"} },
		"priority":          func(in *ScheduleInput) { in.Flow.Priority = 10 },
		"nine attributes": func(in *ScheduleInput) {
			in.Flow.Attributes = map[string]string{}
			for i := 0; i < 9; i++ {
				in.Flow.Attributes[fmt.Sprintf("a%d", i)] = "v"
			}
		},
		"bad cron":    func(in *ScheduleInput) { in.Every, in.Cron = 0, "61 * * * *" },
		"cron fields": func(in *ScheduleInput) { in.Every, in.Cron = 0, "* * * *" },
		"cron never":  func(in *ScheduleInput) { in.Every, in.Cron = 0, "0 0 30 2 *" },
		"bad zone":    func(in *ScheduleInput) { in.Every, in.Cron, in.TimeZone = 0, "@daily", "Mars/Olympus" },
		"local zone":  func(in *ScheduleInput) { in.Every, in.Cron, in.TimeZone = 0, "@daily", "Local" },
		"cron jitter": func(in *ScheduleInput) { in.Every, in.Cron, in.Jitter = 0, "*/5 * * * *", 6*time.Minute },
	}
	before := e.dump()
	for name, mod := range cases {
		in := scheduleInput("ok", time.Minute)
		mod(&in)
		_, err := e.m.CreateSchedule(e.ctx, in)
		if !errors.Is(err, ErrInvalidData) {
			t.Errorf("%s: error %v, want ErrInvalidData", name, err)
		}
	}
	e.sameDump(t, before, "refused creates")
	// The same checks hold for an update, which changes nothing.
	must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("ok", time.Minute))))
	before = e.dump()
	for name, mod := range cases {
		in := scheduleInput("ok", time.Minute)
		mod(&in)
		if in.Name != "ok" {
			continue
		}
		if _, err := e.m.UpdateSchedule(e.ctx, in, 0); !errors.Is(err, ErrInvalidData) {
			t.Errorf("update %s: error %v, want ErrInvalidData", name, err)
		}
	}
	_, err := e.m.PauseSchedule(e.ctx, "ok", strings.Repeat("n", 1025))
	wantErr(t, err, ErrInvalidData)
	_, err = e.m.BackfillSchedule(e.ctx, "ok", time.Now(), time.Now().Add(-time.Hour))
	wantErr(t, err, ErrInvalidData)
	_, err = e.m.BackfillSchedule(e.ctx, "ok", time.Now(), time.Now().Add(1001*time.Minute))
	wantErr(t, err, ErrInvalidData)
	e.sameDump(t, before, "refused updates")
}

func TestScheduleStartEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		in := scheduleInput("bounded", time.Minute)
		in.Start = now.Add(10 * time.Minute)
		in.End = in.Start.Add(3 * time.Minute) // fires at start, +1m, +2m
		in.CatchUp = CatchUpAll
		in.Overlap = OverlapAllowAll
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		if !sc.NextFire.Equal(in.Start) {
			t.Fatalf("next %v, want start %v", sc.NextFire, in.Start)
		}
		if rep := eng.TickAt(e.ctx, in.Start.Add(-time.Millisecond)); rep.Fired != 0 {
			t.Fatalf("before start %+v", rep)
		}
		rep := eng.TickAt(e.ctx, in.End.Add(time.Minute)) // within CatchUpAll's hour
		if rep.Fired != 3 || rep.Err != nil {
			t.Fatalf("after end %+v (%v)", rep, rep.Err)
		}
		for i := 0; i < 3; i++ {
			if !e.fireExists(t, sc, in.Start.Add(time.Duration(i)*time.Minute)) {
				t.Fatalf("fire %d missing", i)
			}
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "bounded", 0)))
		if !got.Done || !got.NextFire.IsZero() || got.Fired != 3 || len(got.Upcoming) != 0 {
			t.Fatalf("done schedule %+v", got)
		}
		if rep := eng.TickAt(e.ctx, in.End.Add(2*time.Hour)); rep.Fired != 0 {
			t.Fatalf("done tick %+v", rep)
		}
		if n := e.flowCount(t); n != 3 {
			t.Fatalf("%d flows", n)
		}
	})
}

func TestScheduleTriggerAndBackfill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		start := e.clock.Now()
		in := scheduleInput("nightly", time.Hour)
		in.Overlap = OverlapSkip
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		// Trigger ignores Overlap: two triggers make two flows.
		f1 := must(t, try(e.m.TriggerSchedule(e.ctx, "nightly")))
		e.clock.Advance(time.Second)
		f2 := must(t, try(e.m.TriggerSchedule(e.ctx, "nightly")))
		if f1.ID == f2.ID || f1.ID != e.store.IdempotentFlowID(triggerKey(sc.ID, start)) {
			t.Fatalf("trigger flows %s %s", f1.ID, f2.ID)
		}
		// The regular fire at +1h makes its flow; a backfill over it
		// makes the others and the same one for +1h.
		e.clock.Advance(time.Hour)
		in.Overlap = OverlapAllowAll
		must(t, try(e.m.UpdateSchedule(e.ctx, in, 0)))
		rep := eng.TickAt(e.ctx, start.Add(time.Hour))
		if rep.Fired != 1 {
			t.Fatalf("tick %+v (%v)", rep, rep.Err)
		}
		fires := must(t, try(e.m.BackfillSchedule(e.ctx, "nightly", start.Add(-3*time.Hour), start.Add(time.Hour+time.Millisecond))))
		// -3h, -2h, -1h, the create time (Every's anchor), +1h.
		if len(fires) != 5 {
			t.Fatalf("backfill fires %+v", fires)
		}
		for i, f := range fires {
			at := start.Add(time.Duration(i-3) * time.Hour)
			if !f.At.Equal(at) || f.FlowID != e.fireFlow(sc, at) || !e.fireExists(t, sc, at) {
				t.Fatalf("fire %d: %+v", i, f)
			}
		}
		if n := e.flowCount(t); n != 2+1+4 {
			t.Fatalf("%d flows, want 7", n)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "nightly", 0)))
		if got.Fired != 2+1+4 {
			t.Fatalf("fired %d, want 7", got.Fired)
		}
		reasons := map[string]int{}
		for _, r := range got.Recent {
			reasons[r.Reason]++
		}
		if reasons["trigger"] != 2 || reasons["backfill"] != 4 || reasons[""] != 1 {
			t.Fatalf("recent %+v", got.Recent)
		}
	})
}

// runTicks ticks eng every step from the clock's time to until, moving
// the clock, and sums the reports.
func runTicks(e *env, eng *WaitEngine, step time.Duration, until time.Time) TickReport {
	var sum TickReport
	for now := e.clock.Now(); !now.After(until); now = now.Add(step) {
		e.clock.Advance(now.Sub(e.clock.Now()))
		rep := eng.TickAt(e.ctx, now)
		sum.Fired += rep.Fired
		sum.Skipped += rep.Skipped
		if rep.Err != nil && sum.Err == nil {
			sum.Err = rep.Err
		}
	}
	return sum
}

func TestScheduleCatchUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		start := e.clock.Now()
		policies := []struct {
			name     string
			mod      func(in *ScheduleInput)
			fired    int
			firstAt  time.Duration // the oldest fire made, after the stop
			lastSkip int
		}{
			// The tick at +11m finds +11m on time: none makes it.
			{"none", func(in *ScheduleInput) { in.CatchUp = CatchUpNone }, 1, 11 * time.Minute, 9},
			{"last", func(in *ScheduleInput) { in.CatchUp = CatchUpLast }, 1, 11 * time.Minute, 9},
			{"all", func(in *ScheduleInput) { in.CatchUp = CatchUpAll }, 10, 2 * time.Minute, 0},
			{"all-max", func(in *ScheduleInput) { in.CatchUp = CatchUpAll; in.CatchUpMax = 4 }, 4, 8 * time.Minute, 6},
			{"all-window", func(in *ScheduleInput) { in.CatchUp = CatchUpAll; in.CatchUpWindow = 5 * time.Minute }, 6, 6 * time.Minute, 4},
		}
		scs := map[string]*Schedule{}
		for _, p := range policies {
			in := scheduleInput("catch-"+p.name, time.Minute)
			in.Overlap = OverlapAllowAll
			p.mod(&in)
			scs[p.name] = must(t, try(e.m.CreateSchedule(e.ctx, in)))
		}
		eng := e.engine()
		// Fire at +1m, then the engines stop for 10 minutes: fires at
		// +2m..+11m are missed; the tick at +11m finds them.
		if rep := runTicks(e, eng, time.Minute, start.Add(time.Minute)); rep.Fired != len(policies) {
			t.Fatalf("first fires %+v (%v)", rep, rep.Err)
		}
		e.clock.Advance(10 * time.Minute)
		rep := eng.TickAt(e.ctx, e.clock.Now())
		if rep.Err != nil {
			t.Fatal(rep.Err)
		}
		for _, p := range policies {
			sc := must(t, try(e.m.GetSchedule(e.ctx, scs[p.name].Name, 0)))
			if int(sc.Fired) != 1+p.fired || int(sc.Skipped) != p.lastSkip {
				t.Errorf("%s: fired %d skipped %d, want %d and %d", p.name, sc.Fired, sc.Skipped, 1+p.fired, p.lastSkip)
			}
			for m := 2; m <= 11; m++ {
				at := start.Add(time.Duration(m) * time.Minute)
				want := p.fired > 0 && time.Duration(m)*time.Minute >= p.firstAt
				if got := e.fireExists(t, scs[p.name], at); got != want {
					t.Errorf("%s: fire at +%dm exists %v, want %v", p.name, m, got, want)
				}
			}
			if !sc.NextFire.Equal(start.Add(12 * time.Minute)) {
				t.Errorf("%s: next %v", p.name, sc.NextFire)
			}
			skips := 0
			for _, r := range sc.Recent {
				if r.Outcome == fireSkipped && r.Reason == "catch_up" {
					skips++
				}
			}
			if skips != p.lastSkip {
				t.Errorf("%s: %d catch_up skips in history, want %d", p.name, skips, p.lastSkip)
			}
		}
		// CatchUpNone makes a fire less than a minute late, skips one
		// more than a minute late.
		late := scheduleInput("catch-none-late", 10*time.Minute)
		late.CatchUp = CatchUpNone
		late.Start = e.clock.Now().Add(20 * time.Second) // +11m20s
		lsc := must(t, try(e.m.CreateSchedule(e.ctx, late)))
		e.clock.Advance(time.Minute + 30*time.Second) // +12m30s
		rep = eng.TickAt(e.ctx, e.clock.Now())
		if !e.fireExists(t, scs["none"], start.Add(12*time.Minute)) {
			t.Fatalf("none: the fire 30s late is missing (%+v)", rep)
		}
		if e.fireExists(t, lsc, late.Start) {
			t.Fatal("none: the fire 70s late was made")
		}
		if got := must(t, try(e.m.GetSchedule(e.ctx, lsc.Name, 0))); got.Skipped != 1 || got.Fired != 0 || got.Recent[0].Reason != "catch_up" {
			t.Fatalf("none: late fire %+v", got)
		}
	})
}

func TestScheduleOverlap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		start := e.clock.Now()
		pol := []OverlapPolicy{OverlapSkip, OverlapBufferOne, OverlapAllowAll, OverlapCancelPrevious}
		scs := map[OverlapPolicy]*Schedule{}
		for _, p := range pol {
			in := scheduleInput("overlap-"+string(p), time.Minute)
			in.Overlap = p
			scs[p] = must(t, try(e.m.CreateSchedule(e.ctx, in)))
		}
		eng := e.engine()
		at := func(m int) time.Time { return start.Add(time.Duration(m) * time.Minute) }
		// Fires at +1m, +2m, +3m; no flow ends.
		runTicks(e, eng, time.Minute, at(3))
		exists := func(p OverlapPolicy, m int) bool { return e.fireExists(t, scs[p], at(m)) }
		want := map[OverlapPolicy][]bool{
			OverlapSkip:           {true, false, false},
			OverlapBufferOne:      {true, false, false}, // +2m buffered, +3m skipped
			OverlapAllowAll:       {true, true, true},
			OverlapCancelPrevious: {true, true, true},
		}
		for _, p := range pol {
			for i, w := range want[p] {
				if got := exists(p, i+1); got != w {
					t.Errorf("%s: fire +%dm exists %v, want %v", p, i+1, got, w)
				}
			}
		}
		for m := 1; m <= 2; m++ {
			f := must(t, try(e.m.Get(e.ctx, e.fireFlow(scs[OverlapCancelPrevious], at(m)))))
			if !f.CancelRequested {
				t.Errorf("cancel_previous: the flow of +%dm has no cancel request", m)
			}
		}
		if f := must(t, try(e.m.Get(e.ctx, e.fireFlow(scs[OverlapCancelPrevious], at(3))))); f.CancelRequested {
			t.Error("cancel_previous: the newest flow has a cancel request")
		}
		// The long-running flow of buffer_one ends: its buffered fire
		// (+2m) makes its flow within a second, not at the next fire.
		e.endFlow(t, e.fireFlow(scs[OverlapBufferOne], at(1)))
		e.clock.Advance(time.Second)
		rep := eng.TickAt(e.ctx, e.clock.Now())
		if !exists(OverlapBufferOne, 2) || exists(OverlapBufferOne, 3) || rep.Fired != 1 {
			t.Fatalf("buffer_one after the end: +2m %v +3m %v, %+v", exists(OverlapBufferOne, 2), exists(OverlapBufferOne, 3), rep)
		}
		sc := must(t, try(e.m.GetSchedule(e.ctx, scs[OverlapBufferOne].Name, 0)))
		if sc.Recent[0].Reason != "buffered" || !sc.Recent[0].At.Equal(at(2)) || sc.Skipped != 1 {
			t.Fatalf("buffer_one history %+v", sc.Recent)
		}
		// Skip fires again once its flow ended.
		e.endFlow(t, e.fireFlow(scs[OverlapSkip], at(1)))
		e.clock.Advance(at(4).Sub(e.clock.Now()))
		eng.TickAt(e.ctx, at(4))
		if !exists(OverlapSkip, 4) {
			t.Fatal("skip: no fire after the previous flow ended")
		}
		sk := must(t, try(e.m.GetSchedule(e.ctx, scs[OverlapSkip].Name, 0)))
		if sk.Fired != 2 || sk.Skipped != 2 {
			t.Fatalf("skip counters %d %d", sk.Fired, sk.Skipped)
		}
		// The totals: fires skip 2, buffer_one 2, allow_all 4, cancel_previous
		// 4; skips skip 2, buffer_one 1.
		st := must(t, try(e.m.Stats(e.ctx)))
		if st.ScheduleFires != 2+2+4+4 || st.ScheduleSkips != 2+1 {
			t.Fatalf("stats fires %d skips %d", st.ScheduleFires, st.ScheduleSkips)
		}
	})
}

// TestScheduleChaos: 4 engines in goroutines over one flow space, 200
// schedules every second for a minute of the fake clock, engines stopped
// and restarted mid-run; every (schedule, second) makes exactly one
// flow, none missed.
func TestScheduleChaos(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			const nSched, seconds = 200, 60
			start := e.clock.Now().Truncate(time.Second)
			e.clock.Advance(start.Sub(e.clock.Now()))
			var scs []*Schedule
			for i := 0; i < nSched; i++ {
				in := scheduleInput(fmt.Sprintf("chaos-%03d", i), time.Second)
				in.Overlap = OverlapAllowAll
				in.CatchUp = CatchUpAll
				// At most 10 per catch-up: the engines must keep up, the
				// last tick below cannot make a minute's fires.
				in.CatchUpMax = 10
				scs = append(scs, must(t, try(e.m.CreateSchedule(e.ctx, in))))
			}
			chaosRun(t, e, 4, seconds)
			end := start.Add(seconds * time.Second)
			// One last tick by a fresh engine: whatever the stops left.
			rep := NewWaitEngine(NewManager(e.reopenStore(b.client(t))), WithLogger(quietLogger())).TickAt(e.ctx, end)
			if rep.Err != nil {
				t.Fatalf("last tick: %v", rep.Err)
			}
			want := map[uuid.UUID]bool{}
			var ids []uuid.UUID
			for _, sc := range scs {
				for s := 1; s <= seconds; s++ {
					id := e.fireFlow(sc, start.Add(time.Duration(s)*time.Second))
					want[id] = true
					ids = append(ids, id)
				}
			}
			missing := 0
			for i := 0; i < len(ids); i += 500 {
				pipe := e.client.Pipeline()
				chunk := ids[i:min(i+500, len(ids))]
				cmds := make([]interface{ Val() int64 }, len(chunk))
				for j, id := range chunk {
					cmds[j] = pipe.Exists(e.ctx, e.store.keys.flow(id))
				}
				if _, err := pipe.Exec(e.ctx); err != nil {
					t.Fatal(err)
				}
				for _, c := range cmds {
					if c.Val() != 1 {
						missing++
					}
				}
			}
			total := e.flowCount(t)
			if missing != 0 || total != int64(len(want)) {
				t.Fatalf("%d fires missing, %d flows for %d fires", missing, total, len(want))
			}
			var fired int64
			for _, sc := range scs {
				got := must(t, try(e.m.GetSchedule(e.ctx, sc.Name, 0)))
				fired += got.Fired
				if got.Skipped != 0 {
					t.Fatalf("%s skipped %d", sc.Name, got.Skipped)
				}
			}
			if fired != int64(len(want)) {
				t.Fatalf("counted %d fires, want %d", fired, len(want))
			}
		})
	}
}

// chaosRun drives engines over e's flow space while the clock advances a
// second at a time: each engine ticks in its own goroutine; now and then
// one is stopped and, a few seconds later, a new one started in its
// place (a new store and client: a restarted process).
func chaosRun(t *testing.T, e *env, engines, seconds int) {
	type runner struct {
		stop chan struct{}
		done chan struct{}
	}
	start := func() *runner {
		r := &runner{stop: make(chan struct{}), done: make(chan struct{})}
		eng := NewWaitEngine(NewManager(e.reopenStore(e.b.client(t))), WithLogger(quietLogger()))
		go func() {
			defer close(r.done)
			for {
				select {
				case <-r.stop:
					return
				default:
				}
				eng.TickAt(e.ctx, e.clock.Now())
			}
		}()
		return r
	}
	rs := make([]*runner, engines)
	for i := range rs {
		rs[i] = start()
	}
	down := map[int]int{} // engine -> second it comes back
	for s := 1; s <= seconds; s++ {
		// While engines run, give them the second's fires before the
		// next (up to 3 s real time: they may fall behind, CatchUpAll
		// then makes up).
		for deadline := time.Now().Add(3 * time.Second); len(down) < engines && time.Now().Before(deadline); {
			head, err := e.client.ZRangeWithScores(e.ctx, e.store.keys.schedDue(), 0, 0).Result()
			if err != nil {
				t.Error(err)
				break
			}
			if len(head) == 0 || int64(head[0].Score) > e.clock.Now().UnixMilli() {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		e.clock.Advance(time.Second)
		switch {
		case s%7 == 0:
			i := s % engines
			if rs[i] != nil {
				close(rs[i].stop)
				<-rs[i].done
				rs[i] = nil
				down[i] = s + 5
			}
		case s == 30:
			// Every engine down for 4 seconds: CatchUpAll makes them up.
			for i, r := range rs {
				if r != nil {
					close(r.stop)
					<-r.done
					rs[i] = nil
					down[i] = s + 4
				}
			}
		}
		for i, back := range down {
			if back == s {
				rs[i] = start()
				delete(down, i)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, r := range rs {
		if r != nil {
			close(r.stop)
			<-r.done
		}
	}
}

func TestScheduleJitterIsDeterministic(t *testing.T) {
	id := uuid.New()
	at := time.Now()
	var seen []time.Duration
	for i := 0; i < 50; i++ {
		j := jitterOf(id, at.Add(time.Duration(i)*time.Minute), 30*time.Second)
		if j < 0 || j >= 30*time.Second || j != jitterOf(id, at.Add(time.Duration(i)*time.Minute), 30*time.Second) {
			t.Fatalf("jitter %v", j)
		}
		seen = append(seen, j)
	}
	sort.Slice(seen, func(a, b int) bool { return seen[a] < seen[b] })
	if seen[0] == seen[len(seen)-1] {
		t.Fatal("jitter is constant")
	}
	if jitterOf(id, at, 0) != 0 {
		t.Fatal("no jitter gave an offset")
	}
}

func TestScheduleJitterDelaysFires(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		start := e.clock.Now()
		in := scheduleInput("jittered", time.Hour)
		in.Jitter = 10 * time.Minute
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		at := start.Add(time.Hour)
		j := jitterOf(sc.ID, at, in.Jitter)
		eng := e.engine()
		if j > 0 {
			if rep := eng.TickAt(e.ctx, at.Add(j-time.Millisecond)); rep.Fired != 0 {
				t.Fatalf("fired before its jitter %v: %+v", j, rep)
			}
		}
		if rep := eng.TickAt(e.ctx, at.Add(j)); rep.Fired != 1 || !e.fireExists(t, sc, at) {
			t.Fatalf("not fired at its jitter %v: %+v (%v)", j, rep, rep.Err)
		}
	})
}

// TestScheduleDST drives cron schedules through daylight-saving changes
// in Europe/Madrid and America/New_York with the fake clock, ticking
// every 5 minutes, and checks each fire time exactly (internal/cron has
// the rules' unit tests; this is them through the engine).
func TestScheduleDST(t *testing.T) {
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	cases := []struct {
		name, cron, zone string
		from, to         string
		want             []string
	}{
		// 02:00 CET -> 03:00 CEST: 02:30 runs once, at 03:30 CEST.
		{"madrid-spring", "30 2 * * *", "Europe/Madrid", "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z",
			[]string{"2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"}},
		// Every 15 minutes across the gap: no fire lost, none twice.
		{"madrid-spring-15m", "*/15 * * * *", "Europe/Madrid", "2026-03-29T00:35:00Z", "2026-03-29T01:30:00Z",
			[]string{"2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z", "2026-03-29T01:30:00Z"}},
		// 03:00 CEST -> 02:00 CET: 02:30 runs once, at its first occurrence.
		{"madrid-fall", "30 2 * * *", "Europe/Madrid", "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		// 02:00 EST -> 03:00 EDT: 02:30 runs at 03:30 EDT.
		{"newyork-spring", "30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z",
			[]string{"2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"}},
		// 02:00 EDT -> 01:00 EST: 01:30 runs once, at 01:30 EDT.
		{"newyork-fall", "30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		// Hour field *: real time through the repeated hour, both 01:00s.
		{"newyork-fall-hourly", "0 * * * *", "America/New_York", "2026-11-01T03:00:00Z", "2026-11-01T09:00:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z",
				"2026-11-01T08:00:00Z", "2026-11-01T09:00:00Z"}},
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		for _, c := range cases {
			from, to := utc(c.from), utc(c.to)
			e.clock.Advance(from.Sub(e.clock.Now()))
			in := scheduleInput("dst-"+c.name, 0)
			in.Cron, in.TimeZone = c.cron, c.zone
			in.Overlap = OverlapAllowAll
			sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
			rep := runTicks(e, eng, 5*time.Minute, to)
			if rep.Err != nil || rep.Skipped != 0 {
				t.Fatalf("%s: %+v (%v)", c.name, rep, rep.Err)
			}
			got := must(t, try(e.m.GetSchedule(e.ctx, sc.Name, 0)))
			var at []string
			for i := len(got.Recent) - 1; i >= 0; i-- {
				f := got.Recent[i]
				at = append(at, f.At.UTC().Format(time.RFC3339))
				if f.Outcome != fireFired || !e.fireExists(t, sc, f.At) {
					t.Errorf("%s: fire %+v has no flow", c.name, f)
				}
			}
			if strings.Join(at, " ") != strings.Join(c.want, " ") {
				t.Errorf("%s: fired at %v, want %v", c.name, at, c.want)
			}
			// The clock jumps to the next case: this one must not fire.
			if err := e.m.DeleteSchedule(e.ctx, sc.Name); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestScheduleCrashBetweenCreateAndAdvance: an engine made a fire's flow
// and died before advancing the schedule (the protocol's step 2 without
// step 3); the schedule's Flow then changed. The next tick finds the
// flow (an idempotency conflict: the fire made its flow already), makes
// no other, and counts the fire once.
func TestScheduleCrashBetweenCreateAndAdvance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := scheduleInput("crash", time.Minute)
		in.Overlap = OverlapAllowAll
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		at := sc.NextFire
		e.clock.Advance(time.Minute)
		rec, err := e.store.readSchedule(e.ctx, "crash")
		if err != nil {
			t.Fatal(err)
		}
		p := planFires(rec, at, false, e.store.IdempotentFlowID)
		if len(p.fires) != 1 {
			t.Fatalf("plan %+v", p)
		}
		made := must(t, try(e.store.create(e.ctx, rec.fireInput(at, fireKey(rec.id, at)), false)))
		in.Flow.Goal = "a new goal"
		must(t, try(e.m.UpdateSchedule(e.ctx, in, 0)))
		rep := e.engine().TickAt(e.ctx, at)
		if rep.Fired != 1 || rep.Err != nil {
			t.Fatalf("tick %+v (%v)", rep, rep.Err)
		}
		if n := e.flowCount(t); n != 1 {
			t.Fatalf("%d flows", n)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "crash", 0)))
		if got.Fired != 1 || got.LastFire.FlowID != made.ID || made.Goal != seedInput().Goal {
			t.Fatalf("schedule %+v, flow %+v", got, made)
		}
		// The next fire makes the new goal.
		e.clock.Advance(time.Minute)
		e.engine().TickAt(e.ctx, at.Add(time.Minute))
		if f := must(t, try(e.m.Get(e.ctx, e.fireFlow(sc, at.Add(time.Minute))))); f.Goal != "a new goal" {
			t.Fatalf("next fire's goal %q", f.Goal)
		}
	})
}

// TestScheduleRacingEngines: two engines work on the same due schedules
// at once (past the tick lock, which only saves work): one flow per
// fire, one advance per schedule.
func TestScheduleRacingEngines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var names []string
		var scs []*Schedule
		for i := 0; i < 50; i++ {
			in := scheduleInput(fmt.Sprintf("race-%02d", i), time.Minute)
			in.Overlap = OverlapAllowAll
			scs = append(scs, must(t, try(e.m.CreateSchedule(e.ctx, in))))
			names = append(names, in.Name)
		}
		e.clock.Advance(time.Minute)
		now := e.clock.Now()
		reps := make([]TickReport, 2)
		done := make(chan int)
		for i := range reps {
			eng := NewWaitEngine(NewManager(e.reopenStore(e.b.client(t))), WithLogger(quietLogger()))
			go func() {
				eng.scheduleRound(e.ctx, now, names, &reps[i])
				done <- i
			}()
		}
		<-done
		<-done
		if reps[0].Err != nil || reps[1].Err != nil {
			t.Fatalf("errors %v %v", reps[0].Err, reps[1].Err)
		}
		if f := reps[0].Fired + reps[1].Fired; f != len(scs) {
			t.Fatalf("fires counted %d, want %d", f, len(scs))
		}
		for _, sc := range scs {
			if !e.fireExists(t, sc, sc.NextFire) {
				t.Fatalf("%s: no flow", sc.Name)
			}
		}
		if n := e.flowCount(t); n != int64(len(scs)) {
			t.Fatalf("%d flows for %d fires", n, len(scs))
		}
	})
}

// TestScheduleRunWakesForDueSchedule: an engine running with a one-hour
// interval still fires a schedule due in a second.
func TestScheduleRunWakesForDueSchedule(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		sc := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("soon", time.Second))))
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		runDone := make(chan error, 1)
		go func() { runDone <- e.engine().Run(ctx, time.Hour) }()
		// After Run's first tick (nothing due), the schedule comes due.
		for e.client.Exists(e.ctx, e.store.keys.lastTick()).Val() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		e.clock.Advance(time.Second)
		for deadline := time.Now().Add(20 * time.Second); !e.fireExists(t, sc, sc.NextFire); {
			if time.Now().After(deadline) {
				t.Fatal("the engine slept through the schedule")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-runDone
	})
}

// TestScheduleTickSurvivesBadEntries: a due name without a schedule (a
// hand edit) is dropped; an unreadable schedule is reported and looked
// at again a minute later; the good schedule beside them fires.
func TestScheduleTickSurvivesBadEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := scheduleInput("good", time.Minute)
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		bad := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("bad", time.Minute))))
		now := e.clock.Now().Add(time.Minute)
		due := e.store.keys.schedDue()
		e.client.ZAdd(e.ctx, due, redis.Z{Score: float64(now.UnixMilli()), Member: "ghost"})
		e.client.HSet(e.ctx, e.store.keys.schedule("bad"), "spec", "{not json")
		e.clock.Advance(time.Minute)
		rep := e.engine().TickAt(e.ctx, now)
		if rep.Fired != 1 || rep.Dropped != 1 || rep.Errors != 1 || !errors.Is(rep.Err, ErrInvalidData) {
			t.Fatalf("tick %+v (%v)", rep, rep.Err)
		}
		if !e.fireExists(t, sc, now) || e.fireExists(t, bad, now) {
			t.Fatal("the good schedule did not fire, or the bad one did")
		}
		if _, err := e.client.ZScore(e.ctx, due, "ghost").Result(); err == nil {
			t.Fatal("the ghost entry stayed")
		}
		if s := e.client.ZScore(e.ctx, due, "bad").Val(); int64(s) != now.Add(time.Minute).UnixMilli() {
			t.Fatalf("the bad schedule's due %v, want a minute on", s)
		}
	})
}

// TestScheduleLongStop: a schedule every second whose engines were down
// for 30 days catches up in one bounded tick: the 1,000 most recent fires
// (CatchUpMax) within the week (CatchUpWindow), the rest counted as
// skipped without visiting them; a cron schedule every minute down for a
// year makes its last fire.
func TestScheduleLongStop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := scheduleInput("every-second", time.Second)
		in.Overlap, in.CatchUp, in.CatchUpWindow, in.CatchUpMax = OverlapAllowAll, CatchUpAll, 7*24*time.Hour, 1000
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		cr := scheduleInput("every-minute", 0)
		cr.Cron, cr.Overlap = "* * * * *", OverlapAllowAll
		csc := must(t, try(e.m.CreateSchedule(e.ctx, cr)))
		e.clock.Advance(30 * 24 * time.Hour)
		now := e.clock.Now()
		rep := e.engine().TickAt(e.ctx, now)
		if rep.Err != nil {
			t.Fatal(rep.Err)
		}
		total := int((30 * 24 * time.Hour) / time.Second)
		if rep.Fired != 1000+1 {
			t.Fatalf("fired %d, want 1001", rep.Fired)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, sc.Name, 0)))
		if got.Fired != 1000 || got.Skipped != int64(total-1000) || !e.fireExists(t, sc, now) || e.fireExists(t, sc, now.Add(-1000*time.Second)) {
			t.Fatalf("every second: fired %d skipped %d, want 1000 and %d", got.Fired, got.Skipped, total-1000)
		}
		last := now.Truncate(time.Minute)
		if !e.fireExists(t, csc, last) {
			t.Fatal("every minute: its last fire is missing")
		}
		if c := must(t, try(e.m.GetSchedule(e.ctx, csc.Name, 0))); c.Fired != 1 || !c.NextFire.Equal(last.Add(time.Minute)) || c.Skipped != 30*24*60-1 {
			t.Fatalf("every minute: fired %d skipped %d next %v", c.Fired, c.Skipped, c.NextFire)
		}
		// A year down: more fire times than a catch-up visits one by one
		// (100,000); the last fire is still found, the count is capped.
		if err := e.m.DeleteSchedule(e.ctx, sc.Name); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(365 * 24 * time.Hour)
		now = e.clock.Now()
		if rep := e.engine().TickAt(e.ctx, now); rep.Err != nil || rep.Fired != 1 {
			t.Fatalf("a year on: %+v (%v)", rep, rep.Err)
		}
		last = now.Truncate(time.Minute)
		c := must(t, try(e.m.GetSchedule(e.ctx, csc.Name, 0)))
		if !e.fireExists(t, csc, last) || !c.NextFire.Equal(last.Add(time.Minute)) || c.Skipped < 30*24*60+maxFireCount-1 {
			t.Fatalf("a year on: fired %d skipped %d next %v", c.Fired, c.Skipped, c.NextFire)
		}
	})
}

// TestScheduleCronBeyondHorizon: internal/cron's Next looks 5 years
// ahead; "0 0 29 2 *" after its 2096 fire has none until 2104 (2100 is
// not a leap year). The schedule is not done: it looks again later and
// fires in 2104. A schedule created when its next fire is that far is
// accepted, and one that can never fire ("0 0 30 2 *") is refused.
func TestScheduleCronBeyondHorizon(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		e.clock.Advance(time.Date(2096, 2, 28, 12, 0, 0, 0, time.UTC).Sub(e.clock.Now()))
		in := scheduleInput("leap", 0)
		in.Cron, in.Overlap = "0 0 29 2 *", OverlapAllowAll
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		fire1 := time.Date(2096, 2, 29, 0, 0, 0, 0, time.UTC)
		fire2 := time.Date(2104, 2, 29, 0, 0, 0, 0, time.UTC)
		if !sc.NextFire.Equal(fire1) {
			t.Fatalf("next %v", sc.NextFire)
		}
		e.clock.Advance(fire1.Sub(e.clock.Now()))
		if rep := eng.TickAt(e.ctx, fire1); rep.Fired != 1 || rep.Err != nil {
			t.Fatalf("2096 tick %+v (%v)", rep, rep.Err)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "leap", 2)))
		if got.Done || !got.NextFire.Equal(fire2) || len(got.Upcoming) != 2 || !got.Upcoming[0].Equal(fire2) {
			t.Fatalf("after 2096: done %v next %v upcoming %v", got.Done, got.NextFire, got.Upcoming)
		}
		// Created the day after: its first fire is in 2104, beyond the
		// 5 years Next looks ahead; accepted.
		e.clock.Advance(24 * time.Hour)
		in.Name = "leap-late"
		if late := must(t, try(e.m.CreateSchedule(e.ctx, in))); !late.NextFire.Equal(fire2) {
			t.Fatalf("created in March 2096: next %v", late.NextFire)
		}
		// Ticks through the years between fire nothing, and leave it due.
		for _, at := range []time.Time{fire1.AddDate(3, 0, 0), fire1.AddDate(4, 0, 1), fire1.AddDate(5, 0, 2), fire1.AddDate(6, 0, 0)} {
			e.clock.Advance(at.Sub(e.clock.Now()))
			if rep := eng.TickAt(e.ctx, at); rep.Fired != 0 || rep.Skipped != 0 || rep.Err != nil {
				t.Fatalf("tick at %v: %+v (%v)", at, rep, rep.Err)
			}
			if g := must(t, try(e.m.GetSchedule(e.ctx, "leap", 1))); g.Done || !g.NextFire.Equal(fire2) {
				t.Fatalf("at %v: done %v next %v", at, g.Done, g.NextFire)
			}
		}
		e.clock.Advance(fire2.Sub(e.clock.Now()))
		if rep := eng.TickAt(e.ctx, fire2); rep.Fired != 2 || rep.Err != nil {
			t.Fatalf("2104 tick %+v (%v)", rep, rep.Err)
		}
		if !e.fireExists(t, sc, fire2) {
			t.Fatal("the 2104 fire made no flow")
		}
		in.Name, in.Cron = "never", "0 0 30 2 *"
		if _, err := e.m.CreateSchedule(e.ctx, in); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("a never-firing cron: %v", err)
		}
	})
}

// TestScheduleFlowRefusedAtFire: schedules whose fires' creates are
// refused (an engine's store with a smaller goal limit than the one that
// made them) fill a whole tick batch at the head of the due index. The
// schedule due beside them still fires in that tick; the refused ones
// say why on GetSchedule, are tried again a minute later (not every
// tick), and fire once the input is fixed.
func TestScheduleFlowRefusedAtFire(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var bad []*Schedule
		for i := 0; i < 2; i++ {
			in := scheduleInput(fmt.Sprintf("bad-%d", i), time.Minute)
			in.Flow.Goal = strings.Repeat("g", 2000)
			bad = append(bad, must(t, try(e.m.CreateSchedule(e.ctx, in))))
		}
		good := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("good", time.Minute))))
		small := NewManager(e.reopenStoreWith(e.client, WithLimits(Limits{TextBytes: 1000})))
		eng := NewWaitEngine(small, WithLogger(quietLogger()), WithTickBatch(2))
		at := good.NextFire
		e.clock.Advance(time.Minute)
		rep := eng.TickAt(e.ctx, at)
		if rep.Fired != 1 || rep.Errors != 2 || !errors.Is(rep.Err, ErrInvalidData) {
			t.Fatalf("tick %+v (%v)", rep, rep.Err)
		}
		if !e.fireExists(t, good, at) || e.fireExists(t, bad[0], at) {
			t.Fatal("the good schedule did not fire, or a bad one did")
		}
		for _, b := range bad {
			got := must(t, try(e.m.GetSchedule(e.ctx, b.Name, 1)))
			if !strings.Contains(got.Error, "goal") || !got.NextFire.Equal(at) || got.Done {
				t.Fatalf("%s: error %q next %v", b.Name, got.Error, got.NextFire)
			}
		}
		// The next ticks within the minute do not try them again.
		for _, d := range []time.Duration{time.Second, 30 * time.Second} {
			e.clock.Advance(at.Add(d).Sub(e.clock.Now()))
			if rep := eng.TickAt(e.ctx, at.Add(d)); rep.Errors != 0 || rep.Fired != 0 {
				t.Fatalf("tick at +%s: %+v (%v)", d, rep, rep.Err)
			}
		}
		// A minute on, with the goal fixed, the missed fire is made
		// (CatchUpLast: the most recent, here the next regular one).
		fixed := scheduleInput("bad-0", time.Minute)
		must(t, try(e.m.UpdateSchedule(e.ctx, fixed, 0)))
		next := at.Add(time.Minute)
		e.clock.Advance(next.Sub(e.clock.Now()))
		rep = eng.TickAt(e.ctx, next)
		if !e.fireExists(t, bad[0], next) || e.fireExists(t, bad[1], next) {
			t.Fatalf("after the fix: %+v (%v)", rep, rep.Err)
		}
		if got := must(t, try(e.m.GetSchedule(e.ctx, "bad-0", 1))); got.Error != "" || got.Fired != 1 {
			t.Fatalf("fixed: error %q fired %d", got.Error, got.Fired)
		}
	})
}

// reopenStoreWith opens another store on the same flow space, with more
// options.
func (e *env) reopenStoreWith(c redis.UniversalClient, opts ...StoreOption) *RedisStore {
	e.t.Helper()
	s, err := NewRedisStore(c, append(append([]StoreOption(nil), e.options...), opts...)...)
	if err != nil {
		e.t.Fatalf("NewRedisStore: %v", err)
	}
	return s
}

// TestScheduleRaceSkipAndFire: under OverlapSkip, two engines past the
// tick lock read the previous flow at different moments: A sees it
// running and records the fire skipped; B, after it ended, makes the
// fire's flow, and its advance is stale. B corrects the record: the fire
// is counted fired with its flow, and that flow is the previous one for
// the next fire (skipped while it runs).
func TestScheduleRaceSkipAndFire(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		sc := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("race-skip", time.Minute))))
		t1 := sc.NextFire
		t2, t3 := t1.Add(time.Minute), t1.Add(2*time.Minute)
		e.clock.Advance(time.Minute)
		if rep := e.engine().TickAt(e.ctx, t1); rep.Fired != 1 {
			t.Fatalf("first fire %+v (%v)", rep, rep.Err)
		}
		e.clock.Advance(time.Minute)
		rec, err := e.store.readSchedule(e.ctx, "race-skip") // B reads
		if err != nil {
			t.Fatal(err)
		}
		// A: the first fire's flow runs: t2 is skipped.
		if rep := e.engine().TickAt(e.ctx, t2); rep.Skipped != 1 || rep.Fired != 0 {
			t.Fatalf("engine A %+v (%v)", rep, rep.Err)
		}
		e.endFlow(t, e.fireFlow(sc, t1))
		// B: the previous flow has ended: t2 fires; its advance is stale.
		var rep TickReport
		b := NewWaitEngine(NewManager(e.reopenStore(e.client)), WithLogger(quietLogger()))
		b.runPlans(e.ctx, t2, []*firePlan{planFires(rec, t2, false, e.store.IdempotentFlowID)}, &rep)
		if rep.Err != nil || !e.fireExists(t, sc, t2) {
			t.Fatalf("engine B %+v (%v)", rep, rep.Err)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "race-skip", 1)))
		f2 := e.fireFlow(sc, t2)
		if got.Fired != 2 || got.Skipped != 0 || got.LastFire == nil || got.LastFire.FlowID != f2 {
			t.Fatalf("after the race: fired %d skipped %d last %+v", got.Fired, got.Skipped, got.LastFire)
		}
		if r := got.Recent[0]; !r.At.Equal(t2) || r.Outcome != fireFired || r.FlowID != f2 || len(got.Recent) != 2 {
			t.Fatalf("recent %+v", got.Recent)
		}
		if st := must(t, try(e.m.Stats(e.ctx))); st.ScheduleFires != 2 || st.ScheduleSkips != 0 {
			t.Fatalf("stats fires %d skips %d", st.ScheduleFires, st.ScheduleSkips)
		}
		// t2's flow runs: t3 is skipped.
		e.clock.Advance(time.Minute)
		if rep := e.engine().TickAt(e.ctx, t3); rep.Skipped != 1 || rep.Fired != 0 || e.fireExists(t, sc, t3) {
			t.Fatalf("t3 %+v (%v)", rep, rep.Err)
		}
	})
}

// TestScheduleZoneCache: a store loads each cron time zone once (a tick
// reads every due cron schedule's), keeps only zones that load, and a
// schedule read from it uses the cached zone.
func TestScheduleZoneCache(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := scheduleInput("madrid", 0)
		in.Cron, in.TimeZone = "0 8 * * MON-FRI", "Europe/Madrid"
		must(t, try(e.m.CreateSchedule(e.ctx, in)))
		in.Name, in.TimeZone = "nowhere", "Nowhere/Atlantis"
		if _, err := e.m.CreateSchedule(e.ctx, in); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("unknown zone: %v", err)
		}
		e.store.zones.mu.Lock()
		cached, n := e.store.zones.m["Europe/Madrid"], len(e.store.zones.m)
		e.store.zones.mu.Unlock()
		if cached == nil || n != 1 {
			t.Fatalf("cache %v (%d zones)", cached, n)
		}
		sc, err := e.store.readSchedule(e.ctx, "madrid")
		if err != nil {
			t.Fatal(err)
		}
		st, err := sc.timing()
		if err != nil {
			t.Fatal(err)
		}
		if cz, ok := st.tm.(cronZone); !ok || cz.loc != cached {
			t.Fatalf("timing %#v does not use the cached zone", st.tm)
		}
	})
}

// TestLostReplySchedules loses one reply of each schedule script (the
// write reached Redis and ran; go-redis sends it again on a new
// connection) and checks that each call reports its true outcome and
// applied once: no "exists" for the create that made the schedule, no
// revision mismatch for the write that bumped it, no double count.
func TestLostReplySchedules(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			c, d := lossyClient(t, b)
			store := e.reopenStore(c)
			m := NewManager(store)
			defer m.Close()
			ctx := e.ctx
			if err := store.LoadScripts(ctx); err != nil {
				t.Fatal(err)
			}
			lost := func(name string, sc *script, call func() error) {
				t.Helper()
				n := d.dropped.Load()
				d.armFor(sc)
				if err := call(); err != nil {
					t.Fatalf("%s with a lost reply: %v", name, err)
				}
				if got := d.dropped.Load(); got != n+1 {
					t.Fatalf("%s: %d replies dropped, want 1", name, got-n)
				}
			}
			in := scheduleInput("lossy", time.Minute)
			in.Overlap = OverlapAllowAll
			var sc *Schedule
			var err error
			lost("CreateSchedule", store.scripts.schedCreate, func() error { sc, err = m.CreateSchedule(ctx, in); return err })
			in.Note = "updated"
			lost("UpdateSchedule", store.scripts.schedWrite, func() error { sc, err = m.UpdateSchedule(ctx, in, 1); return err })
			if sc.Revision != 2 {
				t.Fatalf("update: revision %d", sc.Revision)
			}
			lost("PauseSchedule", store.scripts.schedWrite, func() error { sc, err = m.PauseSchedule(ctx, "lossy", "why"); return err })
			lost("ResumeSchedule", store.scripts.schedWrite, func() error { sc, err = m.ResumeSchedule(ctx, "lossy"); return err })
			if got := must(t, try(e.m.GetSchedule(ctx, "lossy", 1))); got.Revision != 4 || got.Paused || got.Note != "" {
				t.Fatalf("after pause and resume: revision %d paused %v", got.Revision, got.Paused)
			}
			lost("TriggerSchedule", store.scripts.schedRecord, func() error { _, err := m.TriggerSchedule(ctx, "lossy"); return err })
			from := sc.NextFire.Add(-3 * time.Minute)
			lost("BackfillSchedule", store.scripts.schedRecord, func() error {
				_, err := m.BackfillSchedule(ctx, "lossy", from, from.Add(2*time.Minute))
				return err
			})
			at := sc.NextFire
			e.clock.Advance(at.Sub(e.clock.Now()))
			eng := NewWaitEngine(m, WithLogger(quietLogger()))
			d.armFor(store.scripts.schedAdvance)
			if rep := eng.TickAt(ctx, at); rep.Err != nil {
				t.Fatalf("tick with a lost advance reply: %v", rep.Err)
			}
			got := must(t, try(e.m.GetSchedule(ctx, "lossy", 1)))
			if got.Fired != 4 || len(got.Recent) != 4 || !e.fireExists(t, sc, at) {
				t.Fatalf("fired %d, recent %d, want 4 (trigger, 2 backfilled, the tick)", got.Fired, len(got.Recent))
			}
			if st := must(t, try(e.m.Stats(ctx))); st.ScheduleFires != 4 || st.SchedulesPaused != 0 || st.Schedules != 1 {
				t.Fatalf("stats %+v", st)
			}
			lost("DeleteSchedule", store.scripts.schedDelete, func() error { return m.DeleteSchedule(ctx, "lossy") })
			if _, err := e.m.GetSchedule(ctx, "lossy", 0); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after delete: %v", err)
			}
		})
	}
}

// wantScheduleMessage fails unless err's text holds want and does not
// speak of a flow (a schedule's refusal names the schedule).
func wantScheduleMessage(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "flow 0") {
		t.Fatalf("error %q, want it to say %q and name no flow", err, want)
	}
}

// TestScheduleGhostDropKeepsRecreated: the tick drops a due name whose
// hash it found empty; when the name was made again between its read and
// the drop (a delete and a create racing the tick), the new schedule
// stays, due.
func TestScheduleGhostDropKeepsRecreated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		sc := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("phoenix", time.Minute))))
		if e.store.dropGhost(e.ctx, "phoenix") {
			t.Fatal("dropped a schedule that exists")
		}
		got, err := e.m.GetSchedule(e.ctx, "phoenix", 0)
		if err != nil || got.ID != sc.ID {
			t.Fatalf("after the drop: %v, %+v", err, got)
		}
		if _, err := e.client.ZScore(e.ctx, e.store.keys.schedDue(), "phoenix").Result(); err != nil {
			t.Fatalf("no longer due: %v", err)
		}
		if err := e.m.DeleteSchedule(e.ctx, "phoenix"); err != nil {
			t.Fatal(err)
		}
		e.client.ZAdd(e.ctx, e.store.keys.schedDue(), redis.Z{Score: 1, Member: "phoenix"})
		if !e.store.dropGhost(e.ctx, "phoenix") || e.client.ZCard(e.ctx, e.store.keys.schedDue()).Val() != 0 {
			t.Fatal("the ghost entry stayed")
		}
	})
}

// TestSchedulePausedInDueIndex: paused schedules found in the due index
// (a hand edit: a pause takes a schedule out) filling a whole tick batch
// do not hold up the schedule due behind them; the tick takes them out.
func TestSchedulePausedInDueIndex(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for i := 0; i < 2; i++ {
			in := scheduleInput(fmt.Sprintf("held-%d", i), time.Minute)
			in.Paused = true
			must(t, try(e.m.CreateSchedule(e.ctx, in)))
		}
		good := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("good", time.Minute))))
		at := good.NextFire
		due := e.store.keys.schedDue()
		e.client.ZAdd(e.ctx, due, redis.Z{Score: 1, Member: "held-0"}, redis.Z{Score: 1, Member: "held-1"})
		e.clock.Advance(time.Minute)
		rep := e.engine(WithTickBatch(2)).TickAt(e.ctx, at)
		if rep.Fired != 1 || rep.Err != nil || !e.fireExists(t, good, at) {
			t.Fatalf("tick %+v (%v)", rep, rep.Err)
		}
		if n := e.client.ZCard(e.ctx, due).Val(); n != 1 {
			t.Fatalf("%d due entries, want the good schedule's only", n)
		}
		if got := must(t, try(e.m.GetSchedule(e.ctx, "held-0", 1))); !got.Paused || got.Error != "" {
			t.Fatalf("held-0 %+v", got)
		}
		r := must(t, try(e.m.ResumeSchedule(e.ctx, "held-0")))
		if s, err := e.client.ZScore(e.ctx, due, "held-0").Result(); err != nil || int64(s) != r.NextFire.UnixMilli() {
			t.Fatalf("resumed: due %v %v, next %v", s, err, r.NextFire)
		}
	})
}

// TestScheduleEdgeCasesHold checks cases the review tried that held:
// a stale engine's fires after the schedule was deleted and made again
// touch the new one not at all; a buffered fire whose previous flow was
// pruned fires; jitter carrying the last fire before End past End still
// makes it, then the schedule is done.
func TestScheduleEdgeCasesHold(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// Delete and make again while an engine holds the old read.
		old := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("reborn", time.Minute))))
		t1 := old.NextFire
		e.clock.Advance(time.Minute)
		rec, err := e.store.readSchedule(e.ctx, "reborn")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.m.DeleteSchedule(e.ctx, "reborn"); err != nil {
			t.Fatal(err)
		}
		nw := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("reborn", time.Minute))))
		var rep TickReport
		e.engine().runPlans(e.ctx, t1, []*firePlan{planFires(rec, t1, false, e.store.IdempotentFlowID)}, &rep)
		if rep.Err != nil || rep.Fired != 0 || !e.fireExists(t, old, t1) {
			t.Fatalf("stale engine %+v (%v)", rep, rep.Err)
		}
		got := must(t, try(e.m.GetSchedule(e.ctx, "reborn", 1)))
		if got.ID != nw.ID || got.Fired != 0 || len(got.Recent) != 0 || got.LastFire != nil || !got.NextFire.Equal(nw.NextFire) {
			t.Fatalf("the new schedule was touched: %+v", got)
		}

		// BufferOne: the previous flow ends and is pruned before the tick.
		in := scheduleInput("pruned", time.Minute)
		in.Overlap = OverlapBufferOne
		sc := must(t, try(e.m.CreateSchedule(e.ctx, in)))
		a1, a2 := sc.NextFire, sc.NextFire.Add(time.Minute)
		eng := e.engine()
		e.clock.Advance(a1.Sub(e.clock.Now()))
		eng.TickAt(e.ctx, a1)
		e.clock.Advance(a2.Sub(e.clock.Now()))
		if rep := eng.TickAt(e.ctx, a2); rep.Fired != 0 || e.fireExists(t, sc, a2) {
			t.Fatalf("a2 not buffered: %+v", rep)
		}
		e.endFlow(t, e.fireFlow(sc, a1))
		e.clock.Advance(time.Second)
		if n, err := e.m.PruneTerminalFlows(e.ctx, 0); err != nil || n < 1 {
			t.Fatalf("prune: %d %v", n, err)
		}
		if rep := eng.TickAt(e.ctx, e.clock.Now()); rep.Fired != 1 || !e.fireExists(t, sc, a2) {
			t.Fatalf("buffered fire after the prune: %+v (%v)", rep, rep.Err)
		}

		// Jitter near End.
		now := e.clock.Now()
		j := scheduleInput("jittery", time.Minute)
		j.Overlap, j.Jitter, j.CatchUp = OverlapAllowAll, 59*time.Second, CatchUpAll
		j.Start = now.Add(time.Minute).Truncate(time.Second)
		j.End = j.Start.Add(time.Minute + time.Millisecond) // fires at Start and Start+1m, jittered past End
		js := must(t, try(e.m.CreateSchedule(e.ctx, j)))
		runTicks(e, eng, 500*time.Millisecond, j.End.Add(time.Minute))
		if !e.fireExists(t, js, j.Start) || !e.fireExists(t, js, j.Start.Add(time.Minute)) {
			t.Fatal("a jittered fire before End is missing")
		}
		if g := must(t, try(e.m.GetSchedule(e.ctx, "jittery", 1))); !g.Done || g.Fired != 2 {
			t.Fatalf("jittery: done %v fired %d", g.Done, g.Fired)
		}
	})
}
