package taskflow

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/cron"
)

// Schedules start flows on a calendar: a cron expression in a time zone,
// or a fixed interval. The engines' ticks find due schedules the way
// they find due timers (a sorted set by due time: O(due) per tick), and
// each fire creates its flow with an idempotency key derived from the
// schedule's id and the fire's time, so a fire is one flow however many
// engines run and whatever fails. All schedule keys share one hash tag,
// {sched} (keys.go), so every schedule script touches one slot.
//
// The exactly-once protocol of a tick (WaitEngine.TickAt):
//
//  1. read the due schedules (ZRANGEBYSCORE on the due index, pipelined
//     with the tick's other reads) and their hashes;
//  2. per schedule, decide in Go which fire times fire and which are
//     skipped (catch-up, overlap: the previous flow's status is read),
//     and create the fires' flows, idempotently (CancelPrevious first
//     requests the cancel of the previous flow);
//  3. advance the schedule with sched_advance.lua, a compare-and-set on
//     what step 1 read (id, revision, next fire, buffered fire): the next
//     fire, the due score, counters and history. A stale one (another
//     engine advanced first, or the schedule changed) writes nothing.
//
// A crash between 2 and 3 leaves the schedule due: the next tick decides
// again and its creates find the flows made before. Two engines racing
// make one flow per fire (the id is derived), and one advance.

// OverlapPolicy says what a fire does while the previous flow the
// schedule made has not ended.
type OverlapPolicy string

// Overlap policies. The zero value means OverlapSkip.
const (
	// OverlapSkip skips the fire (recorded with reason "overlap").
	OverlapSkip OverlapPolicy = "skip"
	// OverlapBufferOne keeps the fire until the previous flow ends, then
	// makes its flow (reason "buffered"); fires while one is buffered are
	// skipped. The tick looks at a schedule with a buffered fire about
	// once a second.
	OverlapBufferOne OverlapPolicy = "buffer_one"
	// OverlapAllowAll always makes the fire's flow.
	OverlapAllowAll OverlapPolicy = "allow_all"
	// OverlapCancelPrevious requests the cancel of the previous flow
	// (Manager.RequestCancel) and makes the fire's flow.
	OverlapCancelPrevious OverlapPolicy = "cancel_previous"
)

// CatchUpPolicy says which fires a tick makes when it finds several fire
// times past (the engines were stopped, or slower than the schedule).
type CatchUpPolicy string

// Catch-up policies. The zero value means CatchUpLast.
const (
	// CatchUpNone makes the most recent missed fire only when it is at
	// most a minute late (the ordinary lateness of a tick); otherwise
	// every missed fire is skipped (reason "catch_up").
	CatchUpNone CatchUpPolicy = "none"
	// CatchUpLast makes the most recent missed fire; the others are
	// skipped.
	CatchUpLast CatchUpPolicy = "last"
	// CatchUpAll makes every missed fire within CatchUpWindow before now,
	// at most the CatchUpMax most recent; the others are skipped.
	CatchUpAll CatchUpPolicy = "all"
)

// Limits and defaults of schedules.
const (
	maxScheduleName      = 200
	maxScheduleNote      = 1024
	defaultCatchUpWindow = time.Hour
	maxCatchUpWindow     = 7 * 24 * time.Hour
	defaultCatchUpMax    = 100
	maxCatchUpMax        = 1000
	maxScheduleJitter    = time.Hour
	maxBackfill          = 1000
	defaultUpcoming      = 10
	maxUpcoming          = 100
	scheduleHistory      = 100
	// catchUpGrace is how late CatchUpNone still makes a fire.
	catchUpGrace = time.Minute
	// bufferPoll is how soon the tick looks again at a schedule whose
	// buffered fire waits for the previous flow to end.
	bufferPoll = time.Second
	// scheduleLockedWake is how soon Run looks again when another
	// engine holds the schedules' tick lock (that engine fires them).
	scheduleLockedWake = time.Second
	// scheduleRetryWake is how soon Run looks again at a schedule still
	// due after a tick (its fire failed).
	scheduleRetryWake = time.Second
	// scheduleFailRetry is how soon the tick tries again a fire whose
	// flow's create was refused as invalid.
	scheduleFailRetry = time.Minute
	// maxScheduleRounds bounds one tick's schedule work: at most this
	// many batches of due schedules.
	maxScheduleRounds = 10
	// maxFireCount bounds how many past fire times one catch-up visits
	// one by one (a cron schedule stopped for months): past it, the
	// skipped count of that catch-up stops growing.
	maxFireCount = 100000
	// cronWindows is how many of internal/cron's 5-year searches a cron
	// schedule's next fire takes at most (cronZone.next).
	cronWindows = 3
)

// ScheduleInput describes a schedule: when it fires, what each fire
// creates, and its policies.
type ScheduleInput struct {
	// Name is required, unique in the flow space: at most 200 bytes of
	// letters, digits and . _ : / -.
	Name string `json:"name"`
	// Cron is a cron expression: five fields "min hour dom month dow"
	// (ranges, lists, steps, names JAN-DEC and SUN-SAT, 7 = Sunday; when
	// both dom and dow are restricted either matches) or a descriptor
	// (@yearly, @annually, @monthly, @weekly, @daily, @midnight,
	// @hourly), read in TimeZone. Exactly one of Cron and Every.
	Cron string `json:"cron,omitempty"`
	// Every is a fixed interval, at least 1 s, a whole number of
	// milliseconds: fires at Start + k·Every, or, without Start, at the
	// create time + k·Every (k >= 1). Real time: daylight saving does not
	// move it.
	Every time.Duration `json:"every,omitempty"`
	// TimeZone is the IANA name Cron is read in (default "UTC"); refused
	// with Every. Daylight-saving rules: a fire in the hour a spring
	// change skips runs once, shifted by the gap (02:30 → 03:30); a fire
	// at a wall time an autumn change repeats runs once, at its first
	// occurrence, unless the hour field is * (or a step over every hour),
	// when the schedule follows real time through both occurrences.
	TimeZone string `json:"time_zone,omitempty"`
	// Start, when set, is the first time a fire may happen (and Every's
	// anchor). End, when set, ends the schedule: no fire at or after it,
	// and the schedule is then done.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Jitter delays each fire by an offset in [0, Jitter) derived from
	// the schedule's id and the fire time, so every engine agrees on it.
	// Default 0; at most 1 h and at most the interval (the shortest gap
	// between a cron schedule's next 100 fires).
	Jitter time.Duration `json:"jitter,omitempty"`
	// Overlap is what a fire does while the previous flow runs (default
	// OverlapSkip).
	Overlap OverlapPolicy `json:"overlap,omitempty"`
	// CatchUp is what a tick does with missed fires (default
	// CatchUpLast).
	CatchUp CatchUpPolicy `json:"catch_up,omitempty"`
	// CatchUpWindow (CatchUpAll only) is how far back missed fires are
	// still made: default 1 h, at most 7 days.
	CatchUpWindow time.Duration `json:"catch_up_window,omitempty"`
	// CatchUpMax (CatchUpAll only) is how many missed fires one catch-up
	// makes at most (the most recent): default 100, at most 1000.
	CatchUpMax int `json:"catch_up_max,omitempty"`
	// Paused makes the schedule fire nothing until ResumeSchedule.
	Paused bool `json:"paused,omitempty"`
	// Note says why it is paused: free text, at most 1 KiB.
	Note string `json:"note,omitempty"`
	// Flow is the flow each fire creates. Its IdempotencyKey must be
	// empty: each fire's key is "taskflow/schedule/<schedule id>/<fire
	// unix ms>". Its State must be a JSON object (or nil) without a
	// "schedule" key: each fire's flow gets one, {"name", "id", "at"
	// (the fire time, RFC 3339)}.
	Flow CreateManagedInput `json:"flow"`
}

// Schedule is a schedule as stored, with what it did.
type Schedule struct {
	ScheduleInput
	// ID is made at create: a schedule deleted and made again under its
	// name gets a new one (and its fires new flow ids).
	ID uuid.UUID `json:"id"`
	// Revision goes up by one with every change (update, pause, resume);
	// an engine's fires do not change it.
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// NextFire is the next nominal fire time (before jitter); zero when
	// paused or done.
	NextFire time.Time `json:"next_fire,omitzero"`
	// Done is true once no fire is left before End. (A cron expression
	// with no fire time at all is refused at create; one whose next fire
	// is years away, "0 0 29 2 *" across 2100, is not done.)
	Done bool `json:"done,omitempty"`
	// Fired and Skipped count the fires that made a flow and that were
	// skipped. One catch-up of a cron schedule counts at most 100,000
	// skipped fire times one by one (then its most recent ones): a
	// schedule every minute stopped for over 69 days undercounts.
	Fired   int64 `json:"fired"`
	Skipped int64 `json:"skipped"`
	// LastFire is the last fire that made a flow, nil before the first.
	LastFire *ScheduleFire `json:"last_fire,omitempty"`
	// Error says why the last attempt at a fire failed (its flow's
	// create was refused, e.g. an engine with a smaller limit); "" once a
	// fire succeeds. A failed fire is tried again a minute later (a
	// second later when the failure was not the input's).
	Error string `json:"error,omitempty"`
	// Upcoming holds the next nominal fire times (GetSchedule only).
	Upcoming []time.Time `json:"upcoming,omitempty"`
	// Recent holds the last fires and skips, newest first, up to 100
	// (GetSchedule only).
	Recent []ScheduleFire `json:"recent,omitempty"`
}

// ScheduleFire is one fire of a schedule, or one it skipped.
type ScheduleFire struct {
	// At is the nominal fire time (for a trigger: when it was called).
	At time.Time `json:"at"`
	// FlowID is the flow the fire made; uuid.Nil when skipped.
	FlowID uuid.UUID `json:"flow_id"`
	// Outcome is "fired" or "skipped".
	Outcome string `json:"outcome"`
	// Reason says why: "" for an ordinary fire; "buffered" (made after
	// the previous flow ended), "trigger", "backfill"; for a skip
	// "overlap" or "catch_up".
	Reason string `json:"reason,omitempty"`
	// Lag is how long after At the fire was made.
	Lag time.Duration `json:"lag"`
}

// Fire outcomes.
const (
	fireFired   = "fired"
	fireSkipped = "skipped"
)

// CreateSchedule creates a schedule. Its first fire is the first fire
// time after now (and not before Start). A name in use is
// ErrAlreadyExists; bad input is ErrInvalidData, saying which field and
// why. Every engine's tick (WaitEngine.Run) makes its fires.
func (m *Manager) CreateSchedule(ctx context.Context, in ScheduleInput) (*Schedule, error) {
	return m.store.createSchedule(ctx, in)
}

// UpdateSchedule replaces the schedule named in.Name by in. revision, when
// not 0, must be the schedule's current revision (else
// ErrRevisionMismatch). When the timing (Cron, Every, TimeZone, Start,
// End, Jitter) or Paused changed, the next fire is the first after now;
// otherwise it stays. Fires already made keep their flows; later fires
// make in.Flow.
func (m *Manager) UpdateSchedule(ctx context.Context, in ScheduleInput, revision int64) (*Schedule, error) {
	return m.store.updateSchedule(ctx, in, revision)
}

// PauseSchedule stops the schedule's fires until ResumeSchedule; note
// (at most 1 KiB) says why. Pausing a paused schedule changes its note.
func (m *Manager) PauseSchedule(ctx context.Context, name, note string) (*Schedule, error) {
	return m.store.setPaused(ctx, name, true, note)
}

// ResumeSchedule resumes a paused schedule: its next fire is the first
// fire time after now; the fire times it missed while paused are not
// made.
func (m *Manager) ResumeSchedule(ctx context.Context, name string) (*Schedule, error) {
	return m.store.setPaused(ctx, name, false, "")
}

// DeleteSchedule deletes a schedule and its history; the flows it made
// stay. An unknown name is ErrNotFound.
func (m *Manager) DeleteSchedule(ctx context.Context, name string) error {
	return m.store.deleteSchedule(ctx, name)
}

// GetSchedule returns a schedule with its next upcoming fire times
// (default 10 when upcoming <= 0, at most 100) and its recent fires and
// skips (up to 100, newest first). An unknown name is ErrNotFound.
func (m *Manager) GetSchedule(ctx context.Context, name string, upcoming int) (*Schedule, error) {
	return m.store.getSchedule(ctx, name, upcoming)
}

// ListSchedules lists schedules by name (WithLimit: default 100, at most
// 1000; WithCursor: the cursor a previous page returned), without
// Upcoming and Recent, and returns the cursor of the next page ("" when
// this is the last).
func (m *Manager) ListSchedules(ctx context.Context, opts ...ListOption) ([]*Schedule, string, error) {
	return m.store.listSchedules(ctx, opts)
}

// TriggerSchedule makes one flow of the schedule now, whatever its
// Overlap policy, paused or done: idempotency key
// "taskflow/schedule/<id>/trigger/<now unix ms>". The flow becomes the
// schedule's previous flow (for Overlap) and is recorded with reason
// "trigger".
func (m *Manager) TriggerSchedule(ctx context.Context, name string) (*Flow, error) {
	return m.store.triggerSchedule(ctx, name)
}

// BackfillSchedule makes the flows of every fire time of the schedule in
// [from, to) (at most 1000, else ErrInvalidData and nothing made),
// whatever its Overlap policy, with the same idempotency keys as its
// regular fires: a backfilled fire and a regular fire of the same time
// make one flow. It returns the fires, oldest first; those whose flow
// existed already are returned but not counted again.
func (m *Manager) BackfillSchedule(ctx context.Context, name string, from, to time.Time) ([]ScheduleFire, error) {
	return m.store.backfillSchedule(ctx, name, from, to)
}

// timing is a schedule's fire times without bounds: next returns the
// first strictly after after (zero when none). internal/cron's Spec in a
// location, or a fixed interval.
type timing interface {
	next(after time.Time) time.Time
}

// interval fires at anchor + k·d, for every integer k.
type interval struct {
	anchor time.Time
	d      time.Duration
}

func (iv interval) next(after time.Time) time.Time {
	diff := after.Sub(iv.anchor)
	k := diff / iv.d
	if diff < 0 && diff%iv.d != 0 {
		k-- // floor: fires before the anchor count too (BackfillSchedule)
	}
	return iv.anchor.Add((k + 1) * iv.d)
}

// schedTiming is a schedule's fire times within Start and End.
type schedTiming struct {
	tm         timing
	start, end time.Time
}

// next is the first fire time strictly after after, zero when none.
func (st schedTiming) next(after time.Time) time.Time {
	if !st.start.IsZero() && after.Before(st.start) {
		after = st.start.Add(-time.Millisecond)
	}
	t := st.tm.next(after)
	if t.IsZero() || !st.end.IsZero() && !t.Before(st.end) {
		return time.Time{}
	}
	return t.UTC()
}

// fires returns the last keep fire times in [from, to] and how many there
// are (counted one by one up to maxFireCount, then no more).
func (st schedTiming) fires(from, to time.Time, keep int) ([]time.Time, int) {
	if iv, ok := st.tm.(interval); ok {
		return st.intervalFires(iv, from, to, keep)
	}
	var ring []time.Time
	total := 0
	t := from
	for !t.IsZero() && !t.After(to) {
		if total == maxFireCount {
			// Too many to visit: take the tail from a look back.
			for w := time.Minute; ; w *= 4 {
				s := to.Add(-w)
				if !s.After(t) {
					break
				}
				tail, n := st.fires(st.next(s.Add(-time.Millisecond)), to, keep)
				if n >= keep || w > 10*365*24*time.Hour {
					return tail, total + n
				}
			}
		}
		ring = append(ring, t)
		if len(ring) > keep {
			ring = ring[1:]
		}
		total++
		t = st.next(t)
	}
	return ring, total
}

// intervalFires is fires for a fixed interval, by arithmetic.
func (st schedTiming) intervalFires(iv interval, from, to time.Time, keep int) ([]time.Time, int) {
	if from.IsZero() || from.After(to) {
		return nil, 0
	}
	last := to
	if !st.end.IsZero() && !last.Before(st.end) {
		last = st.end.Add(-time.Millisecond)
	}
	if last.Before(from) {
		return nil, 0
	}
	// from is a fire time; so is from + k·d.
	n := int(last.Sub(from)/iv.d) + 1
	k := min(n, keep)
	out := make([]time.Time, k)
	for i := range out {
		out[i] = from.Add(time.Duration(n-k+i) * iv.d).UTC()
	}
	return out, n
}

// jitterOf is a fire's deterministic delay in [0, j): every engine
// computes the same.
func jitterOf(id uuid.UUID, at time.Time, j time.Duration) time.Duration {
	ms := int64(j / time.Millisecond)
	if ms <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write(id[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(at.UnixMilli()))
	_, _ = h.Write(b[:])
	return time.Duration(h.Sum64()%uint64(ms)) * time.Millisecond
}

// fireKey is the idempotency key of a schedule's fire at at.
func fireKey(id uuid.UUID, at time.Time) string {
	return "taskflow/schedule/" + id.String() + "/" + strconv.FormatInt(at.UnixMilli(), 10)
}

// triggerKey is the idempotency key of a TriggerSchedule at now.
func triggerKey(id uuid.UUID, now time.Time) string {
	return "taskflow/schedule/" + id.String() + "/trigger/" + strconv.FormatInt(now.UnixMilli(), 10)
}

// schedule is a schedule's hash as read.
type schedule struct {
	in       ScheduleInput // Flow.State: json.RawMessage
	state    json.RawMessage
	id       uuid.UUID
	rev      string
	created  int64
	updated  int64
	anchor   int64
	next     string // unix ms, "0" for none
	buffered string // unix ms, "0" for none
	done     bool
	last     string
	lastfire string
	errText  string     // why the last attempt at a fire failed
	zones    *zoneCache // the store's, for timing (nil: none)
	fired    int64
	skipped  int64
}

func msString(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func schedTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// decodeSchedule reads a schedule's hash.
func decodeSchedule(name string, h map[string]string) (*schedule, error) {
	bad := func(what string, err error) error {
		return fmt.Errorf("%w: schedule %q: unreadable %s: %v", ErrInvalidData, name, what, err)
	}
	sc := &schedule{rev: h["rev"], next: h["next"], buffered: h["buffered"], last: h["last"], lastfire: h["lastfire"],
		done: h["done"] == "1", errText: h["error"]}
	if err := json.Unmarshal([]byte(h["spec"]), &sc.in); err != nil {
		return nil, bad("spec", err)
	}
	sc.in.Name = name
	if s := h["state"]; s != "" {
		sc.state = json.RawMessage(s)
		sc.in.Flow.State = sc.state
	}
	var err error
	if sc.id, err = uuid.Parse(h["id"]); err != nil {
		return nil, bad("id", err)
	}
	for _, x := range []struct {
		f string
		p *int64
	}{{"created", &sc.created}, {"updated", &sc.updated}, {"anchor", &sc.anchor}, {"fired", &sc.fired}, {"skipped", &sc.skipped}} {
		if v := h[x.f]; v != "" {
			if *x.p, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, bad(x.f, err)
			}
		}
	}
	for _, x := range []struct {
		f string
		p *string
	}{{"next", &sc.next}, {"buffered", &sc.buffered}, {"rev", &sc.rev}} {
		if *x.p == "" {
			*x.p = "0"
		}
		if _, err := strconv.ParseInt(*x.p, 10, 64); err != nil {
			return nil, bad(x.f, err)
		}
	}
	return sc, nil
}

// timing returns the schedule's fire times.
func (sc *schedule) timing() (schedTiming, error) {
	return scheduleTiming(sc.in, time.UnixMilli(sc.anchor).UTC(), sc.zones)
}

// public returns the Schedule a caller sees.
func (sc *schedule) public() *Schedule {
	rev, _ := strconv.ParseInt(sc.rev, 10, 64)
	out := &Schedule{ScheduleInput: sc.in, ID: sc.id, Revision: rev,
		CreatedAt: time.UnixMilli(sc.created).UTC(), UpdatedAt: time.UnixMilli(sc.updated).UTC(),
		Done: sc.done, Fired: sc.fired, Skipped: sc.skipped, Error: sc.errText}
	if !sc.in.Paused && !sc.done {
		out.NextFire = schedTime(sc.next)
	}
	if f, ok := parseFireEntry(sc.lastfire); ok {
		out.LastFire = &f
	}
	return out
}

// fireEntry is a history entry: '<at ms> <outcome> <reason or -> <flow
// id or -> <lag ms>'.
func fireEntry(f ScheduleFire) string {
	reason, flow := f.Reason, "-"
	if reason == "" {
		reason = "-"
	}
	if f.FlowID != uuid.Nil {
		flow = f.FlowID.String()
	}
	return strconv.FormatInt(f.At.UnixMilli(), 10) + " " + f.Outcome + " " + reason + " " + flow + " " +
		strconv.FormatInt(f.Lag.Milliseconds(), 10)
}

func parseFireEntry(s string) (ScheduleFire, bool) {
	p := strings.Fields(s)
	if len(p) != 5 {
		return ScheduleFire{}, false
	}
	at, err1 := strconv.ParseInt(p[0], 10, 64)
	lag, err2 := strconv.ParseInt(p[4], 10, 64)
	if err1 != nil || err2 != nil {
		return ScheduleFire{}, false
	}
	f := ScheduleFire{At: time.UnixMilli(at).UTC(), Outcome: p[1], Lag: time.Duration(lag) * time.Millisecond}
	if p[2] != "-" {
		f.Reason = p[2]
	}
	if p[3] != "-" {
		f.FlowID, _ = uuid.Parse(p[3])
	}
	return f, true
}

// checkScheduleName refuses a name that is not 1..200 bytes of
// [A-Za-z0-9._:/-].
func checkScheduleName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: schedule name is required", ErrInvalidData)
	}
	if len(name) > maxScheduleName {
		return fmt.Errorf("%w: schedule name is %d bytes, at most %d", ErrInvalidData, len(name), maxScheduleName)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:/-", c) >= 0
		if !ok {
			return fmt.Errorf("%w: schedule name %q holds %q: only letters, digits and . _ : / -", ErrInvalidData, name, c)
		}
	}
	return nil
}

// scheduleTiming builds in's fire times; anchor is Every's anchor when
// Start is not set; zones (nil: none) caches the time zones.
func scheduleTiming(in ScheduleInput, anchor time.Time, zones *zoneCache) (schedTiming, error) {
	st := schedTiming{start: in.Start.UTC(), end: in.End.UTC()}
	if in.Start.IsZero() {
		st.start = time.Time{}
	}
	if in.End.IsZero() {
		st.end = time.Time{}
	}
	switch {
	case in.Cron != "" && in.Every != 0:
		return st, fmt.Errorf("%w: schedule %q: both cron and every are set; give exactly one", ErrInvalidData, in.Name)
	case in.Cron != "":
		tm, err := cronTiming(in.Cron, in.TimeZone, zones)
		if err != nil {
			return st, fmt.Errorf("%w: schedule %q: %w", ErrInvalidData, in.Name, err)
		}
		st.tm = tm
	case in.Every != 0:
		if in.TimeZone != "" {
			return st, fmt.Errorf("%w: schedule %q: time_zone applies to cron only; every is real time", ErrInvalidData, in.Name)
		}
		if in.Every < time.Second || in.Every%time.Millisecond != 0 {
			return st, fmt.Errorf("%w: schedule %q: every is %s: at least 1s, a whole number of milliseconds", ErrInvalidData, in.Name, in.Every)
		}
		if !st.start.IsZero() {
			anchor = st.start
		}
		st.tm = interval{anchor: anchor.UTC().Truncate(time.Millisecond), d: in.Every}
	default:
		return st, fmt.Errorf("%w: schedule %q: neither cron nor every is set; give exactly one", ErrInvalidData, in.Name)
	}
	return st, nil
}

// checkSchedule checks in, fills its defaults and returns its timing and
// its flow's state (compact JSON object). now is the create or update
// time, anchor Every's anchor without Start.
func (s *RedisStore) checkSchedule(in *ScheduleInput, anchor, now time.Time) (schedTiming, json.RawMessage, error) {
	if err := checkScheduleName(in.Name); err != nil {
		return schedTiming{}, nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schedule %q: "+format, append([]any{ErrInvalidData, in.Name}, args...)...)
	}
	st, err := scheduleTiming(*in, anchor, &s.zones)
	if err != nil {
		return st, nil, err
	}
	if !in.Start.IsZero() && !in.End.IsZero() && !in.End.After(in.Start) {
		return st, nil, bad("end %s is not after start %s", in.End.Format(time.RFC3339), in.Start.Format(time.RFC3339))
	}
	if !in.End.IsZero() && !in.End.After(now) {
		return st, nil, bad("end %s is not in the future", in.End.Format(time.RFC3339))
	}
	if st.next(now).IsZero() {
		return st, nil, bad("never fires (no fire time before its end, or within 13 years)")
	}
	switch in.Overlap {
	case "":
		in.Overlap = OverlapSkip
	case OverlapSkip, OverlapBufferOne, OverlapAllowAll, OverlapCancelPrevious:
	default:
		return st, nil, bad("unknown overlap policy %q (skip, buffer_one, allow_all, cancel_previous)", in.Overlap)
	}
	switch in.CatchUp {
	case "":
		in.CatchUp = CatchUpLast
	case CatchUpNone, CatchUpLast, CatchUpAll:
	default:
		return st, nil, bad("unknown catch-up policy %q (none, last, all)", in.CatchUp)
	}
	if in.CatchUp == CatchUpAll {
		switch {
		case in.CatchUpWindow == 0:
			in.CatchUpWindow = defaultCatchUpWindow
		case in.CatchUpWindow < 0 || in.CatchUpWindow > maxCatchUpWindow:
			return st, nil, bad("catch_up_window %s is out of range (0 < window <= 168h)", in.CatchUpWindow)
		}
		switch {
		case in.CatchUpMax == 0:
			in.CatchUpMax = defaultCatchUpMax
		case in.CatchUpMax < 0 || in.CatchUpMax > maxCatchUpMax:
			return st, nil, bad("catch_up_max %d is out of range (1..%d)", in.CatchUpMax, maxCatchUpMax)
		}
	} else if in.CatchUpWindow != 0 || in.CatchUpMax != 0 {
		return st, nil, bad("catch_up_window and catch_up_max apply to catch-up policy %q only", CatchUpAll)
	}
	if in.Jitter < 0 || in.Jitter > maxScheduleJitter {
		return st, nil, bad("jitter %s is out of range (0..1h)", in.Jitter)
	}
	if in.Jitter > 0 {
		if gap := shortestGap(st); gap > 0 && in.Jitter > gap {
			return st, nil, bad("jitter %s is longer than the interval between fires (%s)", in.Jitter, gap)
		}
	}
	if len(in.Note) > maxScheduleNote {
		return st, nil, bad("note is %d bytes, at most %d", len(in.Note), maxScheduleNote)
	}
	f := in.Flow
	if f.IdempotencyKey != "" {
		return st, nil, bad("flow.idempotency_key must be empty: each fire's key is derived from the schedule and the fire time")
	}
	for _, r := range []struct{ name, v string }{{"controller_id", f.ControllerID}, {"goal", f.Goal}, {"owner_session_key", f.OwnerSessionKey}} {
		if strings.TrimSpace(r.v) == "" {
			return st, nil, bad("flow.%s is required", r.name)
		}
	}
	if err := s.checkFlowText(f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep); err != nil {
		return st, nil, fmt.Errorf("schedule %q: flow: %w", in.Name, err)
	}
	if _, err := attrArgs(f.Attributes); err != nil {
		return st, nil, fmt.Errorf("schedule %q: flow: %w", in.Name, err)
	}
	if _, err := gateField(f.Concurrency, f.Priority); err != nil {
		return st, nil, fmt.Errorf("schedule %q: flow: %w", in.Name, err)
	}
	state, err := toJSON("flow.state", f.State)
	if err != nil {
		return st, nil, fmt.Errorf("schedule %q: %w", in.Name, err)
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(state, &obj); err != nil || obj == nil {
		return st, nil, bad("flow.state must be a JSON object")
	}
	if _, ok := obj["schedule"]; ok {
		return st, nil, bad(`flow.state holds a "schedule" key: each fire's flow gets its own`)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, state); err != nil {
		return st, nil, bad("flow.state: %v", err)
	}
	state = buf.Bytes()
	// The state each fire makes (with its "schedule" key) must fit.
	probe := withScheduleKey(state, in.Name, uuid.Nil, time.Now())
	if _, err := s.stateArgs("flow.state", probe, false); err != nil {
		return st, nil, fmt.Errorf("schedule %q: %w", in.Name, err)
	}
	return st, state, nil
}

// shortestGap is the shortest time between the schedule's next 100 fire
// times from now (0 when it has fewer than two).
func shortestGap(st schedTiming) time.Duration {
	if iv, ok := st.tm.(interval); ok {
		return iv.d
	}
	var gap time.Duration
	t := st.next(time.Now())
	for i := 0; i < 100 && !t.IsZero(); i++ {
		u := st.next(t)
		if u.IsZero() {
			break
		}
		if d := u.Sub(t); gap == 0 || d < gap {
			gap = d
		}
		t = u
	}
	return gap
}

// withScheduleKey returns state (a compact JSON object) with the top-level
// key "schedule" added.
func withScheduleKey(state json.RawMessage, name string, id uuid.UUID, at time.Time) json.RawMessage {
	tag, _ := json.Marshal(map[string]string{"name": name, "id": id.String(), "at": at.UTC().Format(time.RFC3339Nano)})
	body := bytes.TrimSpace(state)
	inner := bytes.TrimSpace(body[1 : len(body)-1])
	out := make([]byte, 0, len(body)+len(tag)+16)
	out = append(out, '{')
	if len(inner) > 0 {
		out = append(out, inner...)
		out = append(out, ',')
	}
	out = append(out, `"schedule":`...)
	out = append(out, tag...)
	return append(out, '}')
}

// fireInput is the create of a fire of sc at at, under key.
func (sc *schedule) fireInput(at time.Time, key string) CreateManagedInput {
	in := sc.in.Flow
	state := sc.state
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	in.State = withScheduleKey(state, sc.in.Name, sc.id, at)
	in.IdempotencyKey = key
	return in
}

// specFields are the hash fields of in (its state apart).
func specFields(in ScheduleInput, state json.RawMessage) ([]any, error) {
	in.Flow.State = nil
	spec, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("%w: schedule %q: %v", ErrInvalidData, in.Name, err)
	}
	return []any{"spec", string(spec), "state", string(state)}, nil
}

// dueScore is the due index's score of a fire at at: at + its jitter.
func dueScore(sc *schedule, at time.Time) string {
	return strconv.FormatInt(at.Add(jitterOf(sc.id, at, sc.in.Jitter)).UnixMilli(), 10)
}

func (s *RedisStore) createSchedule(ctx context.Context, in ScheduleInput) (*Schedule, error) {
	now, nowMs := s.clock()
	now = now.UTC().Truncate(time.Millisecond)
	st, state, err := s.checkSchedule(&in, now, now)
	if err != nil {
		return nil, err
	}
	next := st.next(now)
	sc := &schedule{in: in, id: uuid.New(), rev: "1", created: now.UnixMilli(), updated: now.UnixMilli(),
		anchor: now.UnixMilli(), next: msString(next), buffered: "0"}
	fields, err := specFields(in, state)
	if err != nil {
		return nil, err
	}
	due := ""
	if !in.Paused {
		due = dueScore(sc, next)
	}
	paused := boolFlag(in.Paused)
	args := append([]any{in.Name, due, paused, uuid.NewString()}, fields...)
	args = append(args, "id", sc.id.String(), "rev", "1", "created", nowMs, "updated", nowMs, "anchor", nowMs,
		"next", sc.next, "due", orZero(due), "buffered", "0", "done", "0", "fired", "0", "skipped", "0")
	if err := s.recordLayout(ctx); err != nil {
		return nil, err
	}
	if _, err := s.run(ctx, s.scripts.schedCreate, uuid.Nil,
		[]string{s.keys.schedule(in.Name), s.keys.schedDue(), s.keys.schedNames(), s.keys.schedStats()}, args...); err != nil {
		return nil, schedError(err, in.Name)
	}
	sc.in.Flow.State = state
	sc.state = state
	return sc.public(), nil
}

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// schedError maps a schedule script's refusal (as run maps it, for a
// flow: uuid.Nil) to its error, which names the schedule.
func schedError(err error, name string) error {
	var rm *RevisionMismatchError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrAlreadyExists):
		return fmt.Errorf("%w: schedule %q exists", ErrAlreadyExists, name)
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: schedule %q", ErrNotFound, name)
	case errors.As(err, &rm):
		return fmt.Errorf("%w: schedule %q is at revision %d, not %d", ErrRevisionMismatch, name, rm.Actual, rm.Expected)
	}
	return fmt.Errorf("taskflow: schedule %q: %w", name, err)
}

// readSchedule reads one schedule's hash.
func (s *RedisStore) readSchedule(ctx context.Context, name string) (*schedule, error) {
	if err := checkScheduleName(name); err != nil {
		return nil, err
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	h, err := s.client.HGetAll(ctx, s.keys.schedule(name)).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: schedule %q: %w", name, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: schedule %q", ErrNotFound, name)
	}
	sc, err := decodeSchedule(name, h)
	if err != nil {
		return nil, err
	}
	sc.zones = &s.zones
	return sc, nil
}

// writeSchedule runs sched_write.lua for sc: new spec in (state), next
// fire next, at now.
func (s *RedisStore) writeSchedule(ctx context.Context, sc *schedule, in ScheduleInput, state json.RawMessage, next time.Time, now time.Time) (*Schedule, error) {
	fields, err := specFields(in, state)
	if err != nil {
		return nil, err
	}
	nsc := *sc
	nsc.in, nsc.state, nsc.next, nsc.updated = in, state, msString(next), now.UnixMilli()
	nsc.in.Flow.State = state
	nsc.done = next.IsZero() && sc.buffered == "0"
	due := ""
	if !in.Paused && !next.IsZero() {
		due = dueScore(&nsc, next)
	}
	if !in.Paused && sc.buffered != "0" {
		due = earlier(due, now.Add(bufferPoll))
	}
	args := append([]any{in.Name, sc.id.String(), sc.rev, due, boolFlag(in.Paused), uuid.NewString()}, fields...)
	args = append(args, "next", nsc.next, "due", orZero(due), "done", boolFlag(nsc.done), "updated", strconv.FormatInt(now.UnixMilli(), 10))
	v, err := s.run(ctx, s.scripts.schedWrite, uuid.Nil, []string{s.keys.schedule(in.Name), s.keys.schedDue(), s.keys.schedStats()}, args...)
	if err != nil {
		return nil, schedError(err, in.Name)
	}
	rev, _ := v.(int64)
	nsc.rev = strconv.FormatInt(rev, 10)
	return nsc.public(), nil
}

// sameTiming reports whether a and b fire at the same times.
func sameTiming(a, b ScheduleInput) bool {
	return a.Cron == b.Cron && a.Every == b.Every && a.TimeZone == b.TimeZone && a.Start.Equal(b.Start) &&
		a.End.Equal(b.End) && a.Jitter == b.Jitter && a.Paused == b.Paused
}

func (s *RedisStore) updateSchedule(ctx context.Context, in ScheduleInput, revision int64) (*Schedule, error) {
	sc, err := s.readSchedule(ctx, in.Name)
	if err != nil {
		return nil, err
	}
	if revision != 0 && strconv.FormatInt(revision, 10) != sc.rev {
		return nil, fmt.Errorf("%w: schedule %q is at revision %s, not %d", ErrRevisionMismatch, in.Name, sc.rev, revision)
	}
	now, _ := s.clock()
	now = now.UTC().Truncate(time.Millisecond)
	st, state, err := s.checkSchedule(&in, time.UnixMilli(sc.anchor), now)
	if err != nil {
		return nil, err
	}
	next := schedTime(sc.next)
	if !sameTiming(sc.in, in) || sc.done && next.IsZero() {
		next = st.next(now)
	}
	return s.writeSchedule(ctx, sc, in, state, next, now)
}

func (s *RedisStore) setPaused(ctx context.Context, name string, paused bool, note string) (*Schedule, error) {
	if len(note) > maxScheduleNote {
		return nil, fmt.Errorf("%w: schedule %q: note is %d bytes, at most %d", ErrInvalidData, name, len(note), maxScheduleNote)
	}
	for attempt := 0; ; attempt++ {
		sc, err := s.readSchedule(ctx, name)
		if err != nil {
			return nil, err
		}
		now, _ := s.clock()
		now = now.UTC().Truncate(time.Millisecond)
		in := sc.in
		in.Paused, in.Note = paused, note
		next := schedTime(sc.next)
		if !paused && sc.in.Paused {
			st, err := sc.timing()
			if err != nil {
				return nil, err
			}
			next = st.next(now)
		}
		out, err := s.writeSchedule(ctx, sc, in, sc.state, next, now)
		if errors.Is(err, ErrRevisionMismatch) && attempt < 3 {
			continue // changed between the read and the write
		}
		return out, err
	}
}

func (s *RedisStore) deleteSchedule(ctx context.Context, name string) error {
	if err := checkScheduleName(name); err != nil {
		return err
	}
	_, err := s.run(ctx, s.scripts.schedDelete, uuid.Nil, s.schedKeys(name), name, uuid.NewString())
	return schedError(err, name)
}

// dropGhost takes a due name without a schedule out of the indexes
// (sched_delete.lua, atomic with any create of the name, which it leaves
// alone) and reports whether it did.
func (s *RedisStore) dropGhost(ctx context.Context, name string) bool {
	_, err := s.run(ctx, s.scripts.schedDelete, uuid.Nil, s.schedKeys(name), name, "")
	return errors.Is(schedError(err, name), ErrNotFound)
}

// schedKeys are sched_delete.lua's keys for schedule name.
func (s *RedisStore) schedKeys(name string) []string {
	return []string{s.keys.schedule(name), s.keys.schedDue(), s.keys.schedNames(), s.keys.schedHistory(name), s.keys.schedStats(),
		s.keys.schedGone(name)}
}

func (s *RedisStore) getSchedule(ctx context.Context, name string, upcoming int) (*Schedule, error) {
	if upcoming <= 0 {
		upcoming = defaultUpcoming
	}
	upcoming = min(upcoming, maxUpcoming)
	sc, err := s.readSchedule(ctx, name)
	if err != nil {
		return nil, err
	}
	out := sc.public()
	if t := out.NextFire; !t.IsZero() {
		st, err := sc.timing()
		if err != nil {
			return nil, err
		}
		for len(out.Upcoming) < upcoming && !t.IsZero() {
			out.Upcoming = append(out.Upcoming, t)
			t = st.next(t)
		}
	}
	hist, err := s.client.LRange(ctx, s.keys.schedHistory(name), 0, scheduleHistory-1).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: schedule %q: %w", name, err)
	}
	for _, h := range hist {
		if f, ok := parseFireEntry(h); ok {
			out.Recent = append(out.Recent, f)
		}
	}
	return out, nil
}

func (s *RedisStore) listSchedules(ctx context.Context, opts []ListOption) ([]*Schedule, string, error) {
	cfg := listSettings(opts)
	if err := s.checkLayout(ctx); err != nil {
		return nil, "", err
	}
	from := "-"
	if cfg.cursor != "" {
		if err := checkScheduleName(cfg.cursor); err != nil {
			return nil, "", fmt.Errorf("%w: malformed schedule cursor %q", ErrInvalidData, cfg.cursor)
		}
		from = "(" + cfg.cursor
	}
	names, err := s.client.ZRangeByLex(ctx, s.keys.schedNames(), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(cfg.limit) + 1}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("taskflow: list schedules: %w", err)
	}
	next := ""
	if len(names) > cfg.limit {
		names = names[:cfg.limit]
		next = names[len(names)-1]
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, s.keys.schedule(n))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", fmt.Errorf("taskflow: list schedules: %w", err)
		}
	}
	out := make([]*Schedule, 0, len(names))
	for i, n := range names {
		if len(cmds[i].Val()) == 0 {
			continue // deleted meanwhile
		}
		sc, err := decodeSchedule(n, cmds[i].Val())
		if err != nil {
			return nil, "", err
		}
		out = append(out, sc.public())
	}
	return out, next, nil
}

func (s *RedisStore) triggerSchedule(ctx context.Context, name string) (*Flow, error) {
	sc, err := s.readSchedule(ctx, name)
	if err != nil {
		return nil, err
	}
	now, _ := s.clock()
	now = now.UTC().Truncate(time.Millisecond)
	f, err := s.create(ctx, sc.fireInput(now, triggerKey(sc.id, now)), false)
	if err != nil {
		return nil, fmt.Errorf("taskflow: trigger schedule %q: %w", name, err)
	}
	fire := fireEntry(ScheduleFire{At: now, FlowID: f.ID, Outcome: fireFired, Reason: "trigger"})
	if _, err := s.run(ctx, s.scripts.schedRecord, uuid.Nil,
		[]string{s.keys.schedule(name), s.keys.schedHistory(name), s.keys.schedStats()},
		sc.id.String(), uuid.NewString(), f.ID.String(), fire, 1, fire); err != nil {
		return f, schedError(err, name)
	}
	return f, nil
}

func (s *RedisStore) backfillSchedule(ctx context.Context, name string, from, to time.Time) ([]ScheduleFire, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: backfill of schedule %q: from %s is not before to %s", ErrInvalidData, name, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	sc, err := s.readSchedule(ctx, name)
	if err != nil {
		return nil, err
	}
	st, err := sc.timing()
	if err != nil {
		return nil, err
	}
	var times []time.Time
	for t := st.next(from.Add(-time.Millisecond)); !t.IsZero() && t.Before(to); t = st.next(t) {
		if len(times) == maxBackfill {
			return nil, fmt.Errorf("%w: backfill of schedule %q: more than %d fire times in [%s, %s)", ErrInvalidData, name, maxBackfill,
				from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		times = append(times, t)
	}
	if len(times) == 0 {
		return nil, nil
	}
	now, _ := s.clock()
	ids := make([]uuid.UUID, len(times))
	pipe := s.client.Pipeline()
	exists := make([]*redis.IntCmd, len(times))
	for i, t := range times {
		ids[i] = s.IdempotentFlowID(fireKey(sc.id, t))
		exists[i] = pipe.Exists(ctx, s.keys.flow(ids[i]))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: backfill of schedule %q: %w", name, err)
	}
	var calls []scriptCall
	var made []int
	for i, t := range times {
		if exists[i].Val() == 1 {
			continue
		}
		c, err := s.createCall(ctx, uuid.Nil, sc.fireInput(t, fireKey(sc.id, t)), false, childLink{})
		if err != nil {
			return nil, err
		}
		calls = append(calls, c.scriptCall)
		made = append(made, i)
	}
	_, errs := s.runPipelined(ctx, calls)
	var entries []any
	fires := make([]ScheduleFire, len(times))
	for i, t := range times {
		fires[i] = ScheduleFire{At: t, FlowID: ids[i], Outcome: fireFired, Reason: "backfill", Lag: now.Sub(t)}
	}
	var first error
	for j, err := range errs {
		i := made[j]
		if err = scriptError(err, ids[i]); err != nil && !errors.Is(err, ErrIdempotencyConflict) && !errors.Is(err, ErrAlreadyExists) {
			if first == nil {
				first = fmt.Errorf("taskflow: backfill of schedule %q at %s: %w", name, t3339(times[i]), err)
			}
			continue
		}
		entries = append(entries, fireEntry(fires[i]))
	}
	if len(entries) > 0 {
		args := append([]any{sc.id.String(), uuid.NewString(), "", "", len(entries)}, tail(entries, scheduleHistory)...)
		if _, err := s.run(ctx, s.scripts.schedRecord, uuid.Nil,
			[]string{s.keys.schedule(name), s.keys.schedHistory(name), s.keys.schedStats()}, args...); err != nil && first == nil {
			first = schedError(err, name)
		}
	}
	return fires, first
}

func t3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// tail returns the last n of xs.
func tail[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[len(xs)-n:]
	}
	return xs
}

// earlier returns the earlier of due (unix ms, "" for none) and t, as
// unix ms.
func earlier(due string, t time.Time) string {
	ms := t.UnixMilli()
	if n, err := strconv.ParseInt(due, 10, 64); err == nil && n <= ms {
		return due
	}
	return strconv.FormatInt(ms, 10)
}

// cronTiming parses a cron expression read in the time zone tz (an IANA
// name; "" is UTC), loaded through zones (nil: no cache). "Local" is
// refused: engines on hosts in different zones would disagree on the
// fire times.
func cronTiming(expr, tz string, zones *zoneCache) (timing, error) {
	spec, err := cron.Parse(expr)
	if err != nil {
		return nil, err
	}
	if tz == "" {
		return cronZone{spec, time.UTC}, nil
	}
	if tz == "Local" {
		return nil, fmt.Errorf("time zone %q depends on the host: name an IANA zone", tz)
	}
	loc, err := zones.load(tz)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %v", tz, err)
	}
	return cronZone{spec, loc}, nil
}

// zoneCache holds the time zones a store's cron schedules are read in:
// time.LoadLocation reads and parses the zone database on every call
// (about 9 µs), and a tick reads each due cron schedule's. Only names
// that load are kept, so it holds at most the zone database's names.
type zoneCache struct {
	mu sync.Mutex
	m  map[string]*time.Location
}

// load is time.LoadLocation(name), cached; a nil cache loads each time.
func (z *zoneCache) load(name string) (*time.Location, error) {
	if z == nil {
		return time.LoadLocation(name)
	}
	z.mu.Lock()
	loc := z.m[name]
	z.mu.Unlock()
	if loc != nil {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	z.mu.Lock()
	if z.m == nil {
		z.m = map[string]*time.Location{}
	}
	z.m[name] = loc
	z.mu.Unlock()
	return loc, nil
}

// cronZone is a cron expression read in a location.
type cronZone struct {
	spec *cron.Spec
	loc  *time.Location
}

// next is the first fire strictly after after. internal/cron's Next
// looks 5 years ahead, and its zero Time is not "never": "0 0 29 2 *"
// after its 2096 fire has none until 2104, as 2100 is not a leap year.
// So next looks on from 4 years later, for at most cronWindows windows
// (about 13 years, more than any gap of a cron expression that fires at
// all: at most 8 years, Feb 29 around a century); zero then means never.
func (c cronZone) next(after time.Time) time.Time {
	for i := 0; i < cronWindows; i++ {
		if t := c.spec.Next(after, c.loc); !t.IsZero() {
			return t
		}
		after = after.AddDate(4, 0, 0) // none in (after, after+5y]
	}
	return time.Time{}
}

// firePlan is what a tick does with one due schedule.
type firePlan struct {
	sc       *schedule
	fires    []ScheduleFire // the fires to make, in time order
	entries  []ScheduleFire // fires and skips, in time order (history)
	skipped  int            // skips, counted (entries may hold fewer)
	cancel   []uuid.UUID    // previous flows to cancel before the creates
	chain    bool           // CancelPrevious: each fire cancels the one before
	next     time.Time
	buffered time.Time
	failed   error // a create failed: no advance (sched_fail.lua)
}

// tickSchedules makes the fires of the schedules due at now, in at most
// maxScheduleRounds batches; head is the due index's first entry, read
// with the tick's other reads (an idle tick pays that one command).
func (e *WaitEngine) tickSchedules(ctx context.Context, now time.Time, head []redis.Z, rep *TickReport) {
	if len(head) == 0 {
		e.schedWake.Store(0)
		return
	}
	if int64(head[0].Score) > now.UnixMilli() {
		e.schedWake.Store(int64(head[0].Score))
		return
	}
	// One engine at a time works on the schedules: the others would
	// redo its creates (harmless, idempotent, but wasted). The lock only
	// saves work; a dead engine's lock stalls the others for 5 s at most.
	lock := e.s.keys.schedTickLock()
	if ok, err := e.s.client.SetNX(ctx, lock, e.name, tickLockTTL).Result(); err != nil || !ok {
		if err != nil {
			rep.fail(fmt.Errorf("taskflow: tick: schedules: %w", err))
		}
		e.schedWake.Store(now.Add(scheduleLockedWake).UnixMilli())
		return
	}
	defer e.s.client.Del(context.WithoutCancel(ctx), lock)
	nowMs := strconv.FormatInt(now.UnixMilli(), 10)
	for round := 0; ctx.Err() == nil; round++ {
		if round == maxScheduleRounds {
			rep.Truncated = true
			break
		}
		names, err := e.s.client.ZRangeByScore(ctx, e.s.keys.schedDue(), &redis.ZRangeBy{Min: "-inf", Max: nowMs, Count: int64(e.batch)}).Result()
		if err != nil {
			rep.fail(fmt.Errorf("taskflow: tick: schedules: %w", err))
			break
		}
		if len(names) == 0 || e.scheduleRound(ctx, now, names, rep) == 0 || len(names) < e.batch {
			break
		}
	}
	e.schedWake.Store(0)
	if z, err := e.s.client.ZRangeWithScores(ctx, e.s.keys.schedDue(), 0, 0).Result(); err == nil && len(z) > 0 {
		wake := int64(z[0].Score)
		if !rep.Truncated && wake <= now.UnixMilli() {
			// Still due after the tick: a fire that failed (it is
			// reported); try again in a while, not in a tight loop.
			wake = now.Add(scheduleRetryWake).UnixMilli()
		}
		e.schedWake.Store(wake)
	}
}

// scheduleRound handles one batch of due schedules (the protocol's steps
// 1 to 3) and returns how many left their due position.
func (e *WaitEngine) scheduleRound(ctx context.Context, now time.Time, names []string, rep *TickReport) int {
	s := e.s
	pipe := s.client.Pipeline()
	hashes := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		hashes[i] = pipe.HGetAll(ctx, s.keys.schedule(n))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		rep.fail(fmt.Errorf("taskflow: tick: schedules: %w", err))
		return 0
	}
	moved := 0
	var scs []*schedule
	for i, n := range names {
		h := hashes[i].Val()
		if len(h) == 0 {
			// A due name without a schedule (a hand edit, or deleted
			// since the ZRANGE): drop the entry, unless a create of the
			// name came first.
			if s.dropGhost(ctx, n) {
				rep.Dropped++
				moved++
			}
			continue
		}
		sc, err := decodeSchedule(n, h)
		if err == nil {
			sc.zones = &s.zones
		}
		if err == nil && sc.in.Paused {
			// Paused meanwhile, and the pause took it out of the index;
			// or a hand edit put it back: take it out.
			if v, err := s.run(ctx, s.scripts.schedFail, uuid.Nil, []string{s.keys.schedule(n), s.keys.schedDue()},
				n, sc.id.String(), sc.rev, sc.next, sc.buffered, "", ""); err != nil {
				rep.fail(schedError(err, n))
			} else if v == int64(1) {
				moved++
			}
			continue
		}
		if err == nil {
			_, err = sc.timing()
		}
		if err != nil {
			// Unreadable: look again in a minute, so it does not hold
			// the head of the index (GT: a schedule made again under the
			// name meanwhile keeps its later due time).
			rep.fail(err)
			s.client.ZAddArgs(ctx, s.keys.schedDue(), redis.ZAddArgs{XX: true, GT: true,
				Members: []redis.Z{{Score: float64(now.Add(time.Minute).UnixMilli()), Member: n}}})
			moved++
			continue
		}
		scs = append(scs, sc)
	}
	if len(scs) == 0 {
		return moved
	}
	// The previous flows' status, for the overlap policies.
	pipe = s.client.Pipeline()
	prev := make([]*redis.StringCmd, len(scs))
	for i, sc := range scs {
		id, err := uuid.Parse(sc.last)
		if err == nil && (sc.in.Overlap != OverlapAllowAll || sc.buffered != "0") {
			prev[i] = pipe.HGet(ctx, s.keys.flow(id), "status")
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			rep.fail(fmt.Errorf("taskflow: tick: schedules: %w", err))
			return moved
		}
	}
	plans := make([]*firePlan, len(scs))
	for i, sc := range scs {
		active := prev[i] != nil && prev[i].Err() == nil && !FlowStatus(prev[i].Val()).IsTerminal()
		plans[i] = planFires(sc, now, active, s.IdempotentFlowID)
	}
	return moved + e.runPlans(ctx, now, plans, rep)
}

// runPlans makes the fires of plans (the protocol's steps 2 and 3) and
// returns how many schedules left their due position.
func (e *WaitEngine) runPlans(ctx context.Context, now time.Time, plans []*firePlan, rep *TickReport) int {
	s := e.s
	moved := 0
	var calls []scriptCall
	var owner []int // plan of each call
	for i, p := range plans {
		sc := p.sc
		for _, id := range p.cancel {
			if _, err := e.m.RequestCancel(ctx, id); err != nil && !ignorableCancel(err) {
				rep.fail(err)
			}
		}
		for _, f := range p.fires {
			c, err := s.createCall(ctx, uuid.Nil, sc.fireInput(f.At, fireKey(sc.id, f.At)), false, childLink{})
			if err != nil {
				rep.fail(fmt.Errorf("taskflow: tick: schedule %q: %w", sc.in.Name, err))
				p.failed = err
				break
			}
			calls = append(calls, c.scriptCall)
			owner = append(owner, i)
		}
	}
	_, errs := s.runPipelined(ctx, calls)
	for j, err := range errs {
		if err == nil {
			continue
		}
		if err = scriptError(err, calls[j].flowID()); errors.Is(err, ErrIdempotencyConflict) {
			continue // the fire made its flow from the schedule's older input
		}
		rep.fail(fmt.Errorf("taskflow: tick: schedule %q: %w", plans[owner[j]].sc.in.Name, err))
		if plans[owner[j]].failed == nil {
			plans[owner[j]].failed = err
		}
	}
	var adv []scriptCall
	var advPlans []*firePlan
	for _, p := range plans {
		if p.failed != nil {
			// Not advanced: the fire is tried again later (its creates
			// are idempotent), not at the head of the index every tick.
			adv = append(adv, p.failCall(s, now))
			advPlans = append(advPlans, p)
			continue
		}
		if p.chain {
			for _, f := range p.fires[:max(len(p.fires)-1, 0)] {
				if _, err := e.m.RequestCancel(ctx, f.FlowID); err != nil && !ignorableCancel(err) {
					rep.fail(err)
				}
			}
		}
		adv = append(adv, p.advanceCall(s, now))
		advPlans = append(advPlans, p)
	}
	vals, errs := s.runPipelined(ctx, adv)
	var fix []scriptCall
	var fixPlans []*firePlan
	for i, err := range errs {
		if err != nil {
			rep.fail(schedError(err, advPlans[i].sc.in.Name))
			continue
		}
		moved++
		p := advPlans[i]
		switch n, _ := vals[i].(int64); {
		case p.failed != nil:
		case n == 1:
			rep.Fired += len(p.fires)
			rep.Skipped += p.skipped
		case len(p.fires) > 0:
			// Stale: another engine advanced first, and may have
			// recorded as skipped a fire this tick made.
			fix = append(fix, p.reconcileCall(s))
			fixPlans = append(fixPlans, p)
		}
	}
	vals, errs = s.runPipelined(ctx, fix)
	for i, err := range errs {
		if err != nil {
			rep.fail(schedError(err, fixPlans[i].sc.in.Name))
			continue
		}
		n, _ := vals[i].(int64)
		rep.Fired += int(n)
	}
	return moved
}

// reconcileCall is the sched_reconcile.lua run of p, whose fires were
// made but whose advance was stale.
func (p *firePlan) reconcileCall(s *RedisStore) scriptCall {
	args := []any{p.sc.id.String()}
	for _, f := range p.fires {
		args = append(args, fireEntry(f))
	}
	return scriptCall{s.scripts.schedReconcile, []string{s.keys.schedule(p.sc.in.Name), s.keys.schedHistory(p.sc.in.Name), s.keys.schedStats()}, args}
}

// flowID is the flow a create.lua call names (its first argument).
func (c scriptCall) flowID() uuid.UUID {
	if len(c.args) > 0 {
		if s, ok := c.args[0].(string); ok {
			id, _ := uuid.Parse(s)
			return id
		}
	}
	return uuid.Nil
}

// ignorableCancel reports a cancel request that has nothing to do: the
// flow ended, is gone or has one already.
func ignorableCancel(err error) bool {
	return errors.Is(err, ErrAlreadyTerminal) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrCancelPending)
}

// planFires decides what a tick at now does with due schedule sc
// (catch-up, overlap); active says whether its previous flow has not
// ended.
func planFires(sc *schedule, now time.Time, active bool, flowOf func(key string) uuid.UUID) *firePlan {
	st, _ := sc.timing() // checked by the caller
	in := sc.in
	p := &firePlan{sc: sc, next: schedTime(sc.next), buffered: schedTime(sc.buffered)}
	prev, _ := uuid.Parse(sc.last)
	fired := func(at time.Time, reason string) {
		f := ScheduleFire{At: at, Outcome: fireFired, Reason: reason, Lag: now.Sub(at),
			FlowID: flowOf(fireKey(sc.id, at))}
		if in.Overlap == OverlapCancelPrevious {
			if active && prev != uuid.Nil && len(p.fires) == 0 {
				p.cancel = append(p.cancel, prev)
			}
			p.chain = true
		}
		p.fires = append(p.fires, f)
		p.entries = append(p.entries, f)
		active = true
	}
	skip := func(at time.Time, reason string) {
		p.entries = append(p.entries, ScheduleFire{At: at, Outcome: fireSkipped, Reason: reason, Lag: now.Sub(at)})
	}
	// A buffered fire goes first, once the previous flow ended.
	if !p.buffered.IsZero() && !active {
		fired(p.buffered, "buffered")
		p.buffered = time.Time{}
	}
	keep := 1
	if in.CatchUp == CatchUpAll {
		keep = in.CatchUpMax
	}
	var due []time.Time // the last fire times due, enough for the history
	total := 0
	if !p.next.IsZero() {
		due, total = st.fires(p.next, now, max(keep, scheduleHistory)+2)
		for len(due) > 0 {
			last := due[len(due)-1]
			if !last.Add(jitterOf(sc.id, last, in.Jitter)).After(now) {
				break
			}
			due, total = due[:len(due)-1], total-1 // its jittered time is ahead
		}
	}
	if len(due) == 0 {
		return p
	}
	p.next = st.next(due[len(due)-1])
	var mk []time.Time // the fire times the catch-up policy makes
	switch in.CatchUp {
	case CatchUpAll:
		for _, t := range tail(due, keep) {
			if !t.Before(now.Add(-in.CatchUpWindow)) {
				mk = append(mk, t)
			}
		}
	case CatchUpNone:
		last := due[len(due)-1]
		if now.Sub(last.Add(jitterOf(sc.id, last, in.Jitter))) <= catchUpGrace {
			mk = due[len(due)-1:]
		}
	default:
		mk = due[len(due)-1:]
	}
	p.skipped = total - len(mk)
	for _, t := range due[:len(due)-len(mk)] {
		skip(t, "catch_up")
	}
	for _, t := range mk {
		switch {
		case !active || in.Overlap == OverlapAllowAll || in.Overlap == OverlapCancelPrevious:
			fired(t, "")
		case in.Overlap == OverlapBufferOne && p.buffered.IsZero():
			p.buffered = t // made when the previous flow ends
		default:
			skip(t, "overlap")
			p.skipped++
		}
	}
	return p
}

// failCall is the sched_fail.lua run of p, whose fires failed: the
// schedule is tried again a minute later when its input was refused
// (ErrInvalidData: the next tick would fail the same way), else a
// second later.
func (p *firePlan) failCall(s *RedisStore, now time.Time) scriptCall {
	sc := p.sc
	retry := scheduleRetryWake
	if errors.Is(p.failed, ErrInvalidData) {
		retry = scheduleFailRetry
	}
	why := p.failed.Error()
	if len(why) > maxScheduleNote {
		why = strings.ToValidUTF8(why[:maxScheduleNote], "")
	}
	return scriptCall{s.scripts.schedFail, []string{s.keys.schedule(sc.in.Name), s.keys.schedDue()},
		[]any{sc.in.Name, sc.id.String(), sc.rev, sc.next, sc.buffered, strconv.FormatInt(now.Add(retry).UnixMilli(), 10), why}}
}

// advanceCall is the sched_advance.lua run of p.
func (p *firePlan) advanceCall(s *RedisStore, now time.Time) scriptCall {
	sc := p.sc
	due := ""
	if !p.next.IsZero() {
		due = dueScore(sc, p.next)
	}
	if !p.buffered.IsZero() {
		due = earlier(due, now.Add(bufferPoll))
	}
	done := p.next.IsZero() && p.buffered.IsZero()
	last, lastfire := "", ""
	if n := len(p.fires); n > 0 {
		last, lastfire = p.fires[n-1].FlowID.String(), fireEntry(p.fires[n-1])
	}
	args := []any{sc.in.Name, sc.id.String(), sc.rev, sc.next, sc.buffered, msString(p.next), due, msString(p.buffered),
		boolFlag(done), last, lastfire, len(p.fires), p.skipped}
	for _, f := range tail(p.entries, scheduleHistory) {
		args = append(args, fireEntry(f))
	}
	return scriptCall{s.scripts.schedAdvance, []string{s.keys.schedule(sc.in.Name), s.keys.schedDue(), s.keys.schedHistory(sc.in.Name), s.keys.schedStats()}, args}
}
