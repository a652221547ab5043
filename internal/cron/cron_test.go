package cron

import (
	"errors"
	"math"
	"sort"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, expr string) *Spec {
	t.Helper()
	s, err := Parse(expr)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	return s
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParse(t *testing.T) {
	cases := []struct{ expr, want string }{
		{"* * * * *", "* * * * *"},
		{"  0\t0  1 1 *  ", "0 0 1 1 *"},
		{"*/15 * * * *", "*/15 * * * *"},
		{"*/1 */1 * * *", "* * * * *"},
		{"5 4 * * *", "5 4 * * *"},
		{"0 22 * * 1-5", "0 22 * * 1-5"},
		{"23 0-20/2 * * *", "23 0,2,4,6,8,10,12,14,16,18,20 * * *"},
		{"1,2,3,10-12 * * * *", "1-3,10-12 * * * *"},
		{"3,1,2 * * * *", "1-3 * * * *"},
		{"0 0 1,15 * 3", "0 0 1,15 * 3"},
		{"0 0 * JAN,mar,Dec *", "0 0 * 1,3,12 *"},
		{"0 0 * jan-MAR *", "0 0 * 1-3 *"},
		{"0 0 * * MON-FRI", "0 0 * * 1-5"},
		{"0 0 * * sun", "0 0 * * 0"},
		{"0 0 * * 7", "0 0 * * 0"},
		{"0 0 * * 5-7", "0 0 * * 0,5-6"},
		{"0 0 * * 0,7", "0 0 * * 0"},
		{"0 0 * * */2", "0 0 * * */2"},
		{"0 0 * * mon-sun/2", "0 0 * * 0-1,3,5"},
		{"0 0 * * FRI-SUN", "0 0 * * 0,5-6"},
		{"0 0 */5 * *", "0 0 */5 * *"},
		{"0 0 1-31/10 * *", "0 0 1,11,21,31 * *"},
		{"59 23 31 12 *", "59 23 31 12 *"},
		{"*/60 * * * *", "*/60 * * * *"},
		{"0-59 0-23 1-31 1-12 0-6", "0-59 0-23 1-31 1-12 0-6"},
		{"@yearly", "0 0 1 1 *"},
		{"@annually", "0 0 1 1 *"},
		{"@monthly", "0 0 1 * *"},
		{"@weekly", "0 0 * * 0"},
		{"@daily", "0 0 * * *"},
		{"@midnight", "0 0 * * *"},
		{"@hourly", "0 * * * *"},
		{"@HOURLY", "0 * * * *"},
	}
	for _, c := range cases {
		s, err := Parse(c.expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		if got := s.String(); got != c.want {
			t.Errorf("Parse(%q).String() = %q, want %q", c.expr, got, c.want)
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Errorf("Parse(%q) of String: %v", s.String(), err)
		} else if *again != *s {
			t.Errorf("Parse(%q) round trip: %+v != %+v", c.expr, again, s)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		expr, field, msg string
	}{
		{"", "", "empty expression"},
		{"   ", "", "empty expression"},
		{"* * * *", "", "want 5 fields"},
		{"* * * * * *", "", "got 6"},
		{"@reboot", "", "unknown descriptor"},
		{"@every 5m", "", "unknown descriptor"},
		{"@daily x", "", "unknown descriptor"},
		{"60 * * * *", "minute", "value 60 out of range 0-59"},
		{"-1 * * * *", "minute", "missing value"},
		{"* 24 * * *", "hour", "value 24 out of range 0-23"},
		{"* * 0 * *", "day-of-month", "value 0 out of range 1-31"},
		{"* * 32 * *", "day-of-month", "out of range"},
		{"* * * 0 *", "month", "value 0 out of range 1-12"},
		{"* * * 13 *", "month", "out of range"},
		{"* * * * 8", "day-of-week", "value 8 out of range 0-7"},
		{"*/0 * * * *", "minute", "bad step \"0\""},
		{"*/61 * * * *", "minute", "bad step"},
		{"* */25 * * *", "hour", "bad step"},
		{"* * * * */8", "day-of-week", "bad step"},
		{"*/x * * * *", "minute", "bad step"},
		{"*/ * * * *", "minute", "bad step"},
		{"1-10/-2 * * * *", "minute", "bad step"},
		{"5/15 * * * *", "minute", "needs a range"},
		{"*5 * * * *", "minute", "unexpected"},
		{"*,5 * * * *", "minute", "cannot be part of a list"},
		{"5,* * * * *", "minute", "cannot be part of a list"},
		{"* * * FOO *", "month", "bad name \"FOO\" (want JAN-DEC"},
		{"* * * * MONDAY", "day-of-week", "bad name"},
		{"* * * * JAN", "day-of-week", "bad name"},
		{"* * * MON *", "month", "bad name"},
		{"MON * * * *", "minute", "bad value \"MON\""},
		{"* * 1x * *", "day-of-month", "bad value"},
		{"30-10 * * * *", "minute", "range \"30-10\" is reversed"},
		{"* * * DEC-JAN *", "month", "reversed"},
		{"* * * * FRI-MON", "day-of-week", "reversed"},
		{"1,,2 * * * *", "minute", "empty list element"},
		{"1, * * * *", "minute", "empty list element"},
		{"1- * * * *", "minute", "missing value"},
		{"1-2-3 * * * *", "minute", "bad value"},
		{"99999 * * * *", "minute", "bad value"},
	}
	for _, c := range cases {
		_, err := Parse(c.expr)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v, want a *ParseError", c.expr, err)
			continue
		}
		if pe.Field != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Parse(%q) = %v (field %q), want field %q and %q", c.expr, err, pe.Field, c.field, c.msg)
		}
	}
}

// fires walks Next from `from` n times.
func fires(s *Spec, from time.Time, loc *time.Location, n int) []time.Time {
	var out []time.Time
	t := from
	for i := 0; i < n; i++ {
		t = s.Next(t, loc)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

func fmtTimes(ts []time.Time) string {
	var b []string
	for _, t := range ts {
		b = append(b, t.UTC().Format("2006-01-02 15:04"))
	}
	return strings.Join(b, ", ")
}

func TestNext(t *testing.T) {
	cases := []struct {
		expr string
		from string
		want []string
	}{
		{"* * * * *", "2026-01-01 00:00", []string{"2026-01-01 00:01", "2026-01-01 00:02"}},
		{"0 0 * * *", "2026-01-31 23:59", []string{"2026-02-01 00:00", "2026-02-02 00:00"}},
		// Month ends: the 31st skips short months.
		{"0 12 31 * *", "2026-01-01 00:00", []string{"2026-01-31 12:00", "2026-03-31 12:00", "2026-05-31 12:00", "2026-07-31 12:00", "2026-08-31 12:00"}},
		{"0 0 30 * *", "2026-01-30 00:00", []string{"2026-03-30 00:00", "2026-04-30 00:00"}},
		// Leap years.
		{"0 0 29 2 *", "2026-01-01 00:00", []string{"2028-02-29 00:00", "2032-02-29 00:00"}},
		{"0 0 28-29 2 *", "2027-02-28 00:00", []string{"2028-02-28 00:00", "2028-02-29 00:00", "2029-02-28 00:00"}},
		{"0 0 L 2 *", "", nil}, // parse error, skipped below
		// Year end.
		{"59 23 31 12 *", "2026-12-31 23:59", []string{"2027-12-31 23:59"}},
		{"0 0 1 1 *", "2026-12-31 23:59", []string{"2027-01-01 00:00"}},
		// dom and dow both restricted: either (2026-03-01 is a Sunday).
		{"0 0 1 * MON", "2026-02-27 00:00", []string{"2026-03-01 00:00", "2026-03-02 00:00", "2026-03-09 00:00", "2026-03-16 00:00", "2026-03-23 00:00", "2026-03-30 00:00", "2026-04-01 00:00"}},
		{"0 0 13 * FRI", "2026-02-01 00:00", []string{"2026-02-06 00:00", "2026-02-13 00:00", "2026-02-20 00:00", "2026-02-27 00:00", "2026-03-06 00:00", "2026-03-13 00:00"}},
		// One side "*": the other governs.
		{"0 0 * * MON", "2026-03-01 00:00", []string{"2026-03-02 00:00", "2026-03-09 00:00"}},
		{"0 0 15 * *", "2026-03-01 00:00", []string{"2026-03-15 00:00", "2026-04-15 00:00"}},
		// "*/n" counts as unrestricted (Vixie): both must match.
		{"0 0 */2 * 1", "2026-03-01 00:00", []string{"2026-03-09 00:00", "2026-03-23 00:00", "2026-04-13 00:00"}},
		{"0 0 * * 7", "2026-03-01 00:00", []string{"2026-03-08 00:00"}},
		{"30 9 * * 1-5", "2026-03-06 10:00", []string{"2026-03-09 09:30", "2026-03-10 09:30"}},
		{"*/20 8-9 * * *", "2026-03-06 09:40", []string{"2026-03-07 08:00", "2026-03-07 08:20", "2026-03-07 08:40", "2026-03-07 09:00"}},
		{"@yearly", "2026-06-01 00:00", []string{"2027-01-01 00:00", "2028-01-01 00:00"}},
		{"@monthly", "2026-01-31 00:00", []string{"2026-02-01 00:00", "2026-03-01 00:00"}},
		{"@weekly", "2026-03-01 00:00", []string{"2026-03-08 00:00", "2026-03-15 00:00"}},
		{"@daily", "2026-03-01 00:00", []string{"2026-03-02 00:00"}},
		{"@midnight", "2026-03-01 12:00", []string{"2026-03-02 00:00"}},
		{"@hourly", "2026-03-01 00:30", []string{"2026-03-01 01:00", "2026-03-01 02:00"}},
	}
	for _, c := range cases {
		s, err := Parse(c.expr)
		if err != nil {
			if c.want == nil {
				continue
			}
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		got := fires(s, utc(c.from), time.UTC, len(c.want))
		var want []time.Time
		for _, w := range c.want {
			want = append(want, utc(w))
		}
		if fmtTimes(got) != fmtTimes(want) {
			t.Errorf("%q from %s:\n got %s\nwant %s", c.expr, c.from, fmtTimes(got), fmtTimes(want))
		}
	}
}

func TestNextStrictlyAfterWithSeconds(t *testing.T) {
	s := mustParse(t, "* * * * *")
	from := time.Date(2026, 1, 1, 10, 0, 30, 5, time.UTC)
	if got, want := s.Next(from, time.UTC), utc("2026-01-01 10:01"); !got.Equal(want) {
		t.Errorf("Next(%v) = %v, want %v", from, got, want)
	}
	if got, want := s.Next(utc("2026-01-01 10:01"), nil), utc("2026-01-01 10:02"); !got.Equal(want) {
		t.Errorf("Next with nil loc = %v, want %v", got, want)
	}
}

func TestNextNone(t *testing.T) {
	for _, expr := range []string{"0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"} {
		if got := mustParse(t, expr).Next(utc("2026-01-01 00:00"), time.UTC); !got.IsZero() {
			t.Errorf("%q: Next = %v, want zero", expr, got)
		}
	}
	// Feb 29: from 2096-03-01 the next is 2104-02-29, beyond 5 years.
	s := mustParse(t, "0 0 29 2 *")
	if got := s.Next(utc("2096-03-01 00:00"), time.UTC); !got.IsZero() {
		t.Errorf("Feb 29 after 2096: Next = %v, want zero", got)
	}
	if got, want := s.Next(utc("2099-03-01 00:00"), time.UTC), utc("2104-02-29 00:00"); !got.Equal(want) {
		t.Errorf("Feb 29 after 2099: Next = %v, want %v", got, want)
	}
}

func TestNextResultInLocation(t *testing.T) {
	madrid := mustLoad(t, "Europe/Madrid")
	got := mustParse(t, "0 9 * * *").Next(utc("2026-06-01 00:00"), madrid)
	if got.Location() != madrid || got.Hour() != 9 || !got.Equal(utc("2026-06-01 07:00")) {
		t.Errorf("Next = %v, want 09:00 CEST (07:00 UTC) in Europe/Madrid", got)
	}
}

// TestNextDST lists the exact UTC instants fired through each transition
// of 2026 in Europe/Madrid and America/New_York (see the package doc).
func TestNextDST(t *testing.T) {
	cases := []struct {
		zone, expr, from string
		want             []string
	}{
		// Madrid spring forward, 2026-03-29 01:00 UTC: 02:00 CET -> 03:00 CEST.
		{"Europe/Madrid", "30 2 * * *", "2026-03-28 00:00", []string{
			"2026-03-28 01:30", // 02:30 CET
			"2026-03-29 01:30", // 02:30 does not exist: 03:30 CEST
			"2026-03-30 00:30", // 02:30 CEST
		}},
		{"Europe/Madrid", "*/15 * * * *", "2026-03-29 00:30", []string{
			"2026-03-29 00:45", // 01:45 CET
			"2026-03-29 01:00", // 03:00 CEST (and 02:00 shifted), once
			"2026-03-29 01:15", "2026-03-29 01:30", "2026-03-29 01:45", "2026-03-29 02:00",
		}},
		{"Europe/Madrid", "0 * * * *", "2026-03-28 23:30", []string{
			"2026-03-29 00:00", // 01:00 CET
			"2026-03-29 01:00", // 03:00 CEST
			"2026-03-29 02:00", // 04:00 CEST
		}},
		{"Europe/Madrid", "*/20 2 * * *", "2026-03-28 12:00", []string{
			"2026-03-29 01:00", // 02:00 -> 03:00 CEST
			"2026-03-29 01:20", // 02:20 -> 03:20 CEST
			"2026-03-29 01:40", // 02:40 -> 03:40 CEST
			"2026-03-30 00:00", // 02:00 CEST
		}},
		// Madrid fall back, 2026-10-25 01:00 UTC: 03:00 CEST -> 02:00 CET.
		{"Europe/Madrid", "30 2 * * *", "2026-10-24 00:00", []string{
			"2026-10-24 00:30", // 02:30 CEST
			"2026-10-25 00:30", // 02:30 CEST, first occurrence only
			"2026-10-26 01:30", // 02:30 CET
		}},
		{"Europe/Madrid", "*/15 2 * * *", "2026-10-24 12:00", []string{
			"2026-10-25 00:00", "2026-10-25 00:15", "2026-10-25 00:30", "2026-10-25 00:45", // CEST only
			"2026-10-26 01:00", // 02:00 CET
		}},
		{"Europe/Madrid", "*/15 * * * *", "2026-10-24 23:30", []string{
			// 01:45 CEST
			"2026-10-24 23:45",
			"2026-10-25 00:00", "2026-10-25 00:15", "2026-10-25 00:30", "2026-10-25 00:45", // 02:xx CEST
			"2026-10-25 01:00", "2026-10-25 01:15", "2026-10-25 01:30", "2026-10-25 01:45", // 02:xx CET
			"2026-10-25 02:00", // 03:00 CET
		}},
		{"Europe/Madrid", "0 * * * *", "2026-10-24 22:30", []string{
			"2026-10-24 23:00", // 01:00 CEST
			"2026-10-25 00:00", // 02:00 CEST
			"2026-10-25 01:00", // 02:00 CET
			"2026-10-25 02:00", // 03:00 CET
		}},
		// New York spring forward, 2026-03-08 07:00 UTC: 02:00 EST -> 03:00 EDT.
		{"America/New_York", "30 2 * * *", "2026-03-07 00:00", []string{
			"2026-03-07 07:30", // 02:30 EST
			"2026-03-08 07:30", // 02:30 does not exist: 03:30 EDT
			"2026-03-09 06:30", // 02:30 EDT
		}},
		{"America/New_York", "*/15 * * * *", "2026-03-08 06:30", []string{
			"2026-03-08 06:45", // 01:45 EST
			"2026-03-08 07:00", // 03:00 EDT
			"2026-03-08 07:15", "2026-03-08 07:30", "2026-03-08 07:45", "2026-03-08 08:00",
		}},
		{"America/New_York", "0 * * * *", "2026-03-08 05:30", []string{
			"2026-03-08 06:00", // 01:00 EST
			"2026-03-08 07:00", // 03:00 EDT
			"2026-03-08 08:00", // 04:00 EDT
		}},
		// New York fall back, 2026-11-01 06:00 UTC: 02:00 EDT -> 01:00 EST.
		{"America/New_York", "30 1 * * *", "2026-10-31 00:00", []string{
			"2026-10-31 05:30", // 01:30 EDT
			"2026-11-01 05:30", // 01:30 EDT, first occurrence only
			"2026-11-02 06:30", // 01:30 EST
		}},
		{"America/New_York", "30 2 * * *", "2026-10-31 12:00", []string{
			"2026-11-01 07:30", // 02:30 EST, exists once
			"2026-11-02 07:30",
		}},
		{"America/New_York", "*/15 * * * *", "2026-11-01 04:30", []string{
			// 00:45 EDT
			"2026-11-01 04:45",
			"2026-11-01 05:00", "2026-11-01 05:15", "2026-11-01 05:30", "2026-11-01 05:45", // 01:xx EDT
			"2026-11-01 06:00", "2026-11-01 06:15", "2026-11-01 06:30", "2026-11-01 06:45", // 01:xx EST
			"2026-11-01 07:00", // 02:00 EST
		}},
		{"America/New_York", "0 * * * *", "2026-11-01 03:30", []string{
			"2026-11-01 04:00", // 00:00 EDT
			"2026-11-01 05:00", // 01:00 EDT
			"2026-11-01 06:00", // 01:00 EST
			"2026-11-01 07:00", // 02:00 EST
		}},
	}
	for _, c := range cases {
		loc := mustLoad(t, c.zone)
		got := fires(mustParse(t, c.expr), utc(c.from), loc, len(c.want))
		var want []time.Time
		for _, w := range c.want {
			want = append(want, utc(w))
		}
		if fmtTimes(got) != fmtTimes(want) {
			t.Errorf("%s %q from %s UTC:\n got %s\nwant %s", c.zone, c.expr, c.from, fmtTimes(got), fmtTimes(want))
		}
	}
}

var testZones = []string{
	"UTC", "Europe/Madrid", "America/New_York", "Australia/Lord_Howe",
	"America/Santiago", "Australia/Sydney", "Asia/Kolkata", "Pacific/Apia",
}

// TestNextWalkYear walks Next over a whole year in each zone: every
// result is after the one before, and Next from any instant between two
// fires gives the later one.
func TestNextWalkYear(t *testing.T) {
	for _, zone := range testZones {
		loc := mustLoad(t, zone)
		for _, expr := range []string{"*/15 * * * *", "30 1 * * *", "30 2 * * *", "0 * * * *", "0 0 * * *", "7 */3 * * 1-5"} {
			s := mustParse(t, expr)
			prev := utc("2026-01-01 00:00")
			end := utc("2027-01-01 00:00")
			n := 0
			for prev.Before(end) {
				next := s.Next(prev, loc)
				if next.IsZero() || !next.After(prev) {
					t.Fatalf("%s %q: Next(%v) = %v, not after", zone, expr, prev, next)
				}
				if mid := prev.Add(next.Sub(prev) / 2); !s.Next(mid, loc).Equal(next) {
					t.Fatalf("%s %q: Next(%v) = %v, but Next(%v) = %v", zone, expr, prev, next, mid, s.Next(mid, loc))
				}
				prev = next
				n++
			}
			if n == 0 {
				t.Fatalf("%s %q: no fires", zone, expr)
			}
		}
	}
}

// bruteForce computes the fires in (from, to] by looking at every minute
// of real time: a matching wall clock seen for the first time fires; seen
// again (fall back) it fires only when the hour field starts with "*";
// matching walls jumped over (spring forward) fire at the instant the old
// offset would give them. It shares no code with Next.
func bruteForce(s *Spec, from, to time.Time, loc *time.Location) []time.Time {
	matches := func(w time.Time) bool {
		_, mo, d := w.Date()
		dom := s.set[fDom]&(1<<uint(d)) != 0
		dow := s.set[fDow]&(1<<uint(w.Weekday())) != 0
		day := dom || dow
		if s.star[fDom] || s.star[fDow] {
			day = dom && dow
		}
		return day && s.set[fMonth]&(1<<uint(mo)) != 0 &&
			s.set[fHour]&(1<<uint(w.Hour())) != 0 && s.set[fMinute]&(1<<uint(w.Minute())) != 0
	}
	wallOf := func(i time.Time) time.Time {
		l := i.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
	}
	set := map[time.Time]bool{}
	seen := map[time.Time]bool{}
	start := from.Add(-48 * time.Hour).Truncate(time.Minute)
	prevI, prevW := start, wallOf(start)
	seen[prevW] = true
	for i := start.Add(time.Minute); !i.After(to.Add(48 * time.Hour)); i = i.Add(time.Minute) {
		w := wallOf(i)
		for g := prevW.Add(time.Minute); g.Before(w); g = g.Add(time.Minute) {
			if !seen[g] && matches(g) {
				set[prevI.Add(g.Sub(prevW))] = true
			}
		}
		if matches(w) && (!seen[w] || s.star[fHour]) {
			set[i] = true
		}
		seen[w] = true
		prevI, prevW = i, w
	}
	var out []time.Time
	for i := range set {
		if i.After(from) && !i.After(to) {
			out = append(out, i)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Before(out[b]) })
	return out
}

// TestNextMatchesBruteForce compares Next with a minute-by-minute search
// over periods with offset changes in several zones, including 30-minute
// daylight saving (Lord Howe), changes at midnight (Santiago) and a
// skipped day (Apia, 2011-12-30).
func TestNextMatchesBruteForce(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	type window struct{ zone, from, to string }
	windows := []window{
		{"Europe/Madrid", "2026-03-27 00:00", "2026-03-31 00:00"},
		{"Europe/Madrid", "2026-10-23 00:00", "2026-10-27 00:00"},
		{"America/New_York", "2026-03-06 00:00", "2026-03-10 00:00"},
		{"America/New_York", "2026-10-30 00:00", "2026-11-03 00:00"},
		{"Australia/Lord_Howe", "2026-04-03 00:00", "2026-04-07 00:00"},
		{"Australia/Lord_Howe", "2026-10-02 00:00", "2026-10-06 00:00"},
		{"America/Santiago", "2026-04-03 00:00", "2026-04-07 00:00"},
		{"America/Santiago", "2026-09-04 00:00", "2026-09-08 00:00"},
		{"Pacific/Apia", "2011-12-27 00:00", "2012-01-02 00:00"},
		{"UTC", "2026-02-26 00:00", "2026-03-02 00:00"},
	}
	exprs := []string{
		"* * * * *", "*/15 * * * *", "30 1 * * *", "30 2 * * *", "0 * * * *", "0 0 * * *",
		"*/20 2 * * *", "5 0-3 * * *", "45 23 * * *", "*/7 */2 * * *", "0 12 * * *", "0 0 1 * 0",
	}
	for _, wdw := range windows {
		loc := mustLoad(t, wdw.zone)
		for _, expr := range exprs {
			s := mustParse(t, expr)
			from, to := utc(wdw.from), utc(wdw.to)
			want := bruteForce(s, from, to, loc)
			var got []time.Time
			for x := s.Next(from, loc); !x.IsZero() && !x.After(to); x = s.Next(x, loc) {
				got = append(got, x)
			}
			if fmtTimes(got) != fmtTimes(want) {
				t.Errorf("%s %q (%s .. %s):\n got %s\nwant %s", wdw.zone, expr, wdw.from, wdw.to, fmtTimes(got), fmtTimes(want))
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/15 0-5,7 1,15 JAN-mar MON-FRI/2", "@daily", "0 0 30 2 *", "5/3 * * * *", "1,,2 * * * *", "*/0 * * * *", "* * * * 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %v is not a *ParseError", expr, err)
			}
			return
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", expr, s.String(), err)
		}
		if *again != *s || again.String() != s.String() {
			t.Fatalf("Parse(%q): String %q does not round-trip", expr, s.String())
		}
	})
}

func FuzzNext(f *testing.F) {
	f.Add("*/15 * * * *", int64(1774746000), uint8(1), int64(3600))
	f.Add("30 1 * * *", int64(1793422800), uint8(2), int64(60))
	f.Add("30 2 * * *", int64(1772928000), uint8(2), int64(1))
	f.Add("0 0 29 2 *", int64(4000000000), uint8(0), int64(86400*400))
	f.Add("0 0 1 * MON", int64(0), uint8(4), int64(-5))
	f.Add("* * * * *", int64(math.MaxInt64), uint8(0), int64(999999999)) // once wrapped to before `after`
	zones := []*time.Location{time.UTC, time.FixedZone("+05:30", 5*3600+1800)}
	for _, z := range testZones[1:] {
		zones = append(zones, mustLoad(f, z))
	}
	f.Fuzz(func(t *testing.T, expr string, sec int64, zone uint8, delta int64) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		// The raw instant may be anywhere in time.Time's range; the
		// stronger checks below use years 1800-2200.
		after := time.Unix(sec%(200*365*86400)+(2000-1970)*365*86400, delta%int64(time.Second))
		loc := zones[int(zone)%len(zones)]
		if raw, next := time.Unix(sec, delta), s.Next(time.Unix(sec, delta), loc); !next.IsZero() && !next.After(raw) {
			t.Fatalf("%q in %s: Next(%v) = %v, not after", expr, loc, raw, next)
		}
		next := s.Next(after, loc)
		if next.IsZero() {
			return
		}
		if !next.After(after) {
			t.Fatalf("%q in %s: Next(%v) = %v, not after", expr, loc, after, next)
		}
		// Monotone, and nothing fires between after and next.
		if delta != 0 {
			d := time.Duration(delta)
			if d < 0 {
				d = -d
			}
			if mid := after.Add(d % next.Sub(after)); !s.Next(mid, loc).Equal(next) {
				t.Fatalf("%q in %s: Next(%v) = %v but Next(%v) = %v", expr, loc, after, next, mid, s.Next(mid, loc))
			}
		}
		if later := s.Next(next, loc); !later.IsZero() && !later.After(next) {
			t.Fatalf("%q in %s: Next(%v) = %v, not after", expr, loc, next, later)
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("String %q does not parse: %v", s.String(), err)
		}
		if got := again.Next(after, loc); !got.Equal(next) {
			t.Fatalf("%q: Parse(String()) %q gives Next %v, want %v", expr, s.String(), got, next)
		}
	})
}

// BenchmarkNext reports the cost of Next as a ratio to one time.Date plus
// one zone lookup measured in the same run ("x_date"): Next's cost in
// units of the cheapest thing a minute-by-minute search would do per
// minute.
func BenchmarkNext(b *testing.B) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		b.Skip(err)
	}
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const baseN = 200000
	baseStart := time.Now()
	for i := 0; i < baseN; i++ {
		time.Date(2026, 3, 1, 0, i%60, 0, 0, loc).ZoneBounds()
	}
	baseNs := float64(time.Since(baseStart).Nanoseconds()) / baseN
	for _, expr := range []string{"*/15 * * * *", "0 9 * * 1-5", "30 2 * * *", "0 0 29 2 *", "0 0 30 2 *"} {
		s, err := Parse(expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				s.Next(from, loc)
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/baseNs, "x_date")
		})
	}
}

func TestNextExtremes(t *testing.T) {
	s := mustParse(t, "* * * * *")
	for _, loc := range []*time.Location{time.UTC, mustLoad(t, "Europe/Madrid"), time.FixedZone("x", -(15*3600 + 56*60 + 8))} {
		for _, after := range []time.Time{
			{}, time.Unix(math.MaxInt64, 999999999), time.Unix(math.MinInt64, 0),
			time.Unix(-62135596800, 0), time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC),
		} {
			if next := s.Next(after, loc); !next.IsZero() && !next.After(after) {
				t.Errorf("Next(%v) in %s = %v, not after", after, loc, next)
			}
		}
	}
	if got, want := s.Next(time.Time{}, time.UTC), time.Date(1, 1, 1, 0, 1, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Next(zero) = %v, want %v", got, want)
	}
}
