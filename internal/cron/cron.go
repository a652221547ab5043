// Package cron parses five-field cron expressions and computes their next
// fire time in a time zone, with defined behaviour on daylight-saving days.
//
// # Syntax
//
// An expression has five fields separated by spaces or tabs:
//
//	minute  hour  day-of-month  month  day-of-week
//	0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
//
// Each field is "*" (every value), "*/n" (every n-th value from the
// field's minimum), or a comma-separated list whose elements are a value
// "a", a range "a-b" (a <= b) or a stepped range "a-b/n". Steps are 1 up to
// the number of values in the field. Months may be written JAN-DEC and days
// of the week SUN-SAT, case-insensitively, also inside ranges ("MON-FRI";
// "SUN" ending a range means 7, so "FRI-SUN" works).
// "*" may not be combined with other list elements, and "a/n" without a
// range is refused.
//
// Instead of five fields an expression may be one of the descriptors
// @yearly and @annually ("0 0 1 1 *"), @monthly ("0 0 1 * *"), @weekly
// ("0 0 * * 0"), @daily and @midnight ("0 0 * * *"), @hourly
// ("0 * * * *"), case-insensitively.
//
// When both the day-of-month and the day-of-week field are restricted, a
// day matches when either matches (Vixie cron): "0 0 1 * MON" fires on the
// first of each month and on every Monday. As in Vixie cron, a field that
// starts with "*" (including "*/n") counts as unrestricted for this rule:
// then a day must match both fields.
//
// [Spec.String] gives the normalised expression: five numeric fields,
// names replaced by numbers, 7 by 0, lists sorted and merged into ranges.
// Parse(s.String()) gives a Spec with the same fire times.
//
// # Time zones and daylight saving
//
// [Spec.Next] matches the wall clock in the given location. A wall clock
// time either exists once, does not exist (it falls in the gap when clocks
// spring forward) or exists twice (when clocks fall back). The rules:
//
//  1. Spring forward: a fire whose wall time falls in the skipped gap runs
//     once, at the wall time shifted forward by the length of the gap (the
//     wall time read with the offset in effect before the change). If that
//     instant is itself a fire, it runs once. In Europe/Madrid on
//     2026-03-29 clocks go from 02:00 CET to 03:00 CEST: "30 2 * * *" fires
//     at 03:30 CEST (01:30 UTC), and "*/15 * * * *" fires at 01:45 CET and
//     then 03:00, 03:15, ... CEST, each once. In America/New_York on
//     2026-03-08, "30 2 * * *" fires at 03:30 EDT (07:30 UTC). (Go's
//     time.Date does not shift consistently inside a gap, so Next does not
//     use it for this.)
//  2. Fall back, hour field restricted (not starting with "*"): a repeated
//     wall time runs once, at its first occurrence (the daylight-time
//     instant). In America/New_York on 2026-11-01 clocks go from 02:00 EDT
//     back to 01:00 EST: "30 1 * * *" fires at 01:30 EDT (05:30 UTC) only.
//     In Europe/Madrid on 2026-10-25 (03:00 CEST back to 02:00 CET),
//     "30 2 * * *" fires at 02:30 CEST (00:30 UTC) only.
//  3. Fall back, hour field "*" or "*/n": the schedule follows real time
//     through the repeated hour and fires in both occurrences, so
//     "*/15 * * * *" never pauses for an hour: in New York it fires at
//     01:45 EDT, 01:00 EST (06:00 UTC), 01:15 EST, ... and "0 * * * *" at
//     01:00 EDT (05:00 UTC) and 01:00 EST (06:00 UTC).
//
// The same rules apply to any change of a zone's UTC offset, not only to
// daylight saving. Next searches at most 5 years ahead and returns the zero
// Time when nothing fires in that window: "0 0 30 2 *" never fires, and
// "0 0 29 2 *" finds nothing after any time from 2096-03-01 to 2099-02-28,
// as 2100 is not a leap year (zero means "none within 5 years", not
// "never").
package cron

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Field indexes, in expression order.
const (
	fMinute = iota
	fHour
	fDom
	fMonth
	fDow
	nFields
)

type fieldInfo struct {
	name     string
	min, max int      // accepted values (day-of-week accepts 7 for Sunday)
	starMax  int      // the highest value "*" covers
	names    []string // names of the values from min on, nil when none
}

// field describes field i; a function rather than a table so that the
// package holds no mutable state.
func field(i int) fieldInfo {
	switch i {
	case fMinute:
		return fieldInfo{name: "minute", min: 0, max: 59, starMax: 59}
	case fHour:
		return fieldInfo{name: "hour", min: 0, max: 23, starMax: 23}
	case fDom:
		return fieldInfo{name: "day-of-month", min: 1, max: 31, starMax: 31}
	case fMonth:
		return fieldInfo{name: "month", min: 1, max: 12, starMax: 12,
			names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}}
	default:
		return fieldInfo{name: "day-of-week", min: 0, max: 7, starMax: 6,
			names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}}
	}
}

// descriptor returns the five fields a descriptor stands for.
func descriptor(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "@yearly", "@annually":
		return "0 0 1 1 *", true
	case "@monthly":
		return "0 0 1 * *", true
	case "@weekly":
		return "0 0 * * 0", true
	case "@daily", "@midnight":
		return "0 0 * * *", true
	case "@hourly":
		return "0 * * * *", true
	}
	return "", false
}

// ParseError reports why an expression was refused. Field is the name of
// the offending field ("minute", "hour", "day-of-month", "month",
// "day-of-week"), or empty when the expression as a whole is wrong.
type ParseError struct {
	Expr  string
	Field string
	Msg   string
}

// Error returns "cron: <expression>: <field> field: <reason>".
func (e *ParseError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("cron: %q: %s", e.Expr, e.Msg)
	}
	return fmt.Sprintf("cron: %q: %s field: %s", e.Expr, e.Field, e.Msg)
}

// Spec is a parsed cron expression. It is immutable and safe for
// concurrent use.
type Spec struct {
	set  [nFields]uint64 // bit v set when value v matches (dow: 0-6)
	star [nFields]bool   // field written as "*" or "*/n"
	step [nFields]int    // the n of "*/n" (1 for "*"); 0 when not star
}

// Parse parses a five-field cron expression or a descriptor (see the
// package documentation for the syntax). Errors are *ParseError values
// naming the field and the reason.
func Parse(expr string) (*Spec, error) {
	text := strings.TrimSpace(expr)
	if text == "" {
		return nil, &ParseError{Expr: expr, Msg: "empty expression"}
	}
	if strings.HasPrefix(text, "@") {
		d, ok := descriptor(text)
		if !ok {
			return nil, &ParseError{Expr: expr, Msg: "unknown descriptor (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"}
		}
		text = d
	}
	parts := strings.Fields(text)
	if len(parts) != nFields {
		return nil, &ParseError{Expr: expr, Msg: fmt.Sprintf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts))}
	}
	s := &Spec{}
	for i, p := range parts {
		if err := s.parseField(i, p); err != nil {
			return nil, &ParseError{Expr: expr, Field: field(i).name, Msg: err.Error()}
		}
	}
	return s, nil
}

func (s *Spec) parseField(i int, text string) error {
	f := field(i)
	if strings.HasPrefix(text, "*") {
		rest := text[1:]
		step := 1
		if rest != "" {
			if !strings.HasPrefix(rest, "/") {
				if strings.Contains(rest, ",") {
					return errors.New(`"*" cannot be part of a list`)
				}
				return fmt.Errorf("unexpected %q after \"*\"", rest)
			}
			n, err := parseStep(rest[1:], f)
			if err != nil {
				return err
			}
			step = n
		}
		for v := f.min; v <= f.starMax; v += step {
			s.set[i] |= 1 << uint(v)
		}
		s.star[i], s.step[i] = true, step
		return nil
	}
	for _, elem := range strings.Split(text, ",") {
		if elem == "" {
			return fmt.Errorf("empty list element in %q", text)
		}
		if strings.HasPrefix(elem, "*") {
			return errors.New(`"*" cannot be part of a list`)
		}
		rng, stepText, hasStep := strings.Cut(elem, "/")
		loText, hiText, isRange := strings.Cut(rng, "-")
		lo, err := parseValue(loText, f)
		if err != nil {
			return err
		}
		hi := lo
		if isRange {
			if hi, err = parseValue(hiText, f); err != nil {
				return err
			}
			if i == fDow && hi == 0 && !isDigits(hiText) {
				hi = 7 // "MON-SUN" ends on Sunday, 7
			}
			if hi < lo {
				return fmt.Errorf("range %q is reversed (%d > %d)", rng, lo, hi)
			}
		}
		step := 1
		if hasStep {
			if !isRange {
				return fmt.Errorf("step %q needs a range (a-b/n) or \"*\"", elem)
			}
			if step, err = parseStep(stepText, f); err != nil {
				return err
			}
		}
		for v := lo; v <= hi; v += step {
			s.set[i] |= 1 << uint(v)
		}
	}
	if i == fDow && s.set[i]&(1<<7) != 0 {
		s.set[i] = s.set[i]&^(1<<7) | 1 // 7 is Sunday
	}
	return nil
}

func parseStep(text string, f fieldInfo) (int, error) {
	n, err := strconv.Atoi(text)
	size := f.starMax - f.min + 1
	if err != nil || n < 1 || n > size || !isDigits(text) {
		return 0, fmt.Errorf("bad step %q (want 1-%d)", text, size)
	}
	return n, nil
}

func parseValue(text string, f fieldInfo) (int, error) {
	if text == "" {
		return 0, errors.New("missing value")
	}
	if isDigits(text) {
		v, err := strconv.Atoi(text)
		if err != nil || v < f.min || v > f.max {
			return 0, fmt.Errorf("value %s out of range %d-%d", text, f.min, f.max)
		}
		return v, nil
	}
	if f.names == nil {
		return 0, fmt.Errorf("bad value %q (want a number %d-%d)", text, f.min, f.max)
	}
	lower := strings.ToLower(text)
	for j, n := range f.names {
		if lower == n {
			if f.min == 0 {
				return j, nil
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("bad name %q (want %s-%s or a number)", text,
		strings.ToUpper(f.names[0]), strings.ToUpper(f.names[len(f.names)-1]))
}

func isDigits(s string) bool {
	if s == "" || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the normalised expression: five numeric fields, "*" and
// "*/n" kept as written, other fields as sorted lists of values and
// ranges ("1-5,10").
func (s *Spec) String() string {
	var b strings.Builder
	for i := 0; i < nFields; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		if s.star[i] {
			b.WriteByte('*')
			if s.step[i] > 1 {
				b.WriteByte('/')
				b.WriteString(strconv.Itoa(s.step[i]))
			}
			continue
		}
		f := field(i)
		first := true
		for v := f.min; v <= f.starMax; v++ {
			if s.set[i]&(1<<uint(v)) == 0 {
				continue
			}
			end := v
			for end+1 <= f.starMax && s.set[i]&(1<<uint(end+1)) != 0 {
				end++
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(strconv.Itoa(v))
			if end > v {
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(end))
			}
			v = end
		}
	}
	return b.String()
}

// searchYears bounds how far Next looks ahead.
const searchYears = 5

// Next returns the first fire time strictly after `after`, reading the
// wall clock in loc (UTC when loc is nil), with the daylight-saving rules
// of the package documentation. The result is in loc. It returns the zero
// Time when nothing fires within 5 years after `after`.
//
// Next jumps over non-matching months, days, hours and minutes and walks
// the zone's offset periods (time.Time.ZoneBounds), so its cost does not
// grow with the distance to the next fire beyond a few hundred steps.
func (s *Spec) Next(after time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	after = after.UTC() // drops any monotonic reading
	limit := after.AddDate(searchYears, 0, 0)
	if !limit.After(after) {
		return time.Time{}
	}
	// Begin one offset period early: a gap at the start of the previous
	// period shifts fires forward, possibly past that period's end.
	p := periodAt(after, loc)
	if !p.start.IsZero() {
		p = periodAt(p.start.Add(-time.Nanosecond), loc)
	}
	var best time.Time
	for n := 0; n < 10000; n++ {
		if !p.start.IsZero() && (p.start.After(limit) || (!best.IsZero() && !p.start.Before(best))) {
			break
		}
		if c, ok := s.nextInPeriod(after, limit, p); ok && (best.IsZero() || c.Before(best)) {
			best = c
		}
		if p.end.IsZero() || (!best.IsZero() && best.Before(p.end)) {
			break
		}
		p = periodAt(p.end, loc)
	}
	if best.IsZero() || best.After(limit) || !best.After(after) {
		// The last test only fails near the ends of time.Time's range,
		// where the arithmetic above wraps around.
		return time.Time{}
	}
	return best.In(loc)
}

// period is a span [start, end) of instants with one UTC offset; start
// (end) is zero when the span reaches the beginning (end) of time.
// prevOff is the offset just before start.
type period struct {
	start, end   time.Time
	off, prevOff time.Duration
}

func periodAt(t time.Time, loc *time.Location) period {
	lt := t.In(loc)
	_, off := lt.Zone()
	start, end := lt.ZoneBounds()
	p := period{start: start.UTC(), end: end.UTC(), off: time.Duration(off) * time.Second}
	if start.IsZero() {
		p.start = time.Time{}
		p.prevOff = p.off
	} else {
		_, prev := start.Add(-time.Nanosecond).In(loc).Zone()
		p.prevOff = time.Duration(prev) * time.Second
	}
	if end.IsZero() {
		p.end = time.Time{}
	}
	return p
}

// nextInPeriod returns the earliest fire after `after` that belongs to
// period p: a wall time read with p's offset whose instant lies in p, or a
// wall time in the gap that opened at p's start, shifted by the gap.
// Walls are represented as time.Time values in UTC holding the wall clock.
func (s *Spec) nextInPeriod(after, limit time.Time, p period) (time.Time, bool) {
	var best time.Time
	found := false

	lo := ceilStrict(after.Add(p.off))
	hi := limit.Add(p.off).Add(time.Minute)
	if !p.end.IsZero() && p.end.Add(p.off).Before(hi) {
		hi = p.end.Add(p.off)
	}
	if !p.start.IsZero() {
		first := p.start.Add(p.off)
		if p.prevOff > p.off && !s.star[fHour] {
			// Fall back with a restricted hour: the repeated walls
			// [start+off, start+prevOff) ran in the previous period.
			first = p.start.Add(p.prevOff)
		}
		if w := ceilMinute(first); w.After(lo) {
			lo = w
		}
	}
	if w, ok := s.nextWall(lo, hi); ok {
		best, found = w.Add(-p.off), true
	}

	if !p.start.IsZero() && p.prevOff < p.off {
		// Spring forward: walls [start+prevOff, start+off) do not exist;
		// they fire read with the previous offset.
		glo := ceilStrict(after.Add(p.prevOff))
		if w := ceilMinute(p.start.Add(p.prevOff)); w.After(glo) {
			glo = w
		}
		if w, ok := s.nextWall(glo, p.start.Add(p.off)); ok {
			if c := w.Add(-p.prevOff); !found || c.Before(best) {
				best, found = c, true
			}
		}
	}
	return best, found
}

// ceilStrict returns the first whole minute strictly after t.
func ceilStrict(t time.Time) time.Time {
	return t.Truncate(time.Minute).Add(time.Minute)
}

// ceilMinute returns the first whole minute at or after t.
func ceilMinute(t time.Time) time.Time {
	if tr := t.Truncate(time.Minute); tr.Equal(t) {
		return t
	}
	return ceilStrict(t)
}

// nextWall returns the first matching wall time w with lo <= w < hi; lo
// is a whole minute in UTC standing for the wall clock.
func (s *Spec) nextWall(lo, hi time.Time) (time.Time, bool) {
	w := lo
	for n := 0; n < 100000 && w.Before(hi); n++ {
		y, mo, d := w.Date()
		h, m := w.Hour(), w.Minute()
		if s.set[fMonth]&(1<<uint(mo)) == 0 {
			next, ok := nextBit(s.set[fMonth], int(mo)+1, 12)
			if !ok {
				y++
				next, _ = nextBit(s.set[fMonth], 1, 12)
			}
			w = time.Date(y, time.Month(next), 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if wd := w.Weekday(); !s.dayMatches(d, wd) {
			// Find the next matching day of this month by arithmetic,
			// else go to the next month.
			last := time.Date(y, mo+1, 0, 0, 0, 0, 0, time.UTC).Day()
			next := 0
			for c := d + 1; c <= last && next == 0; c++ {
				if s.dayMatches(c, time.Weekday((int(wd)+c-d)%7)) {
					next = c
				}
			}
			if next == 0 {
				w = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
			} else {
				w = time.Date(y, mo, next, 0, 0, 0, 0, time.UTC)
			}
			continue
		}
		nh, ok := nextBit(s.set[fHour], h, 23)
		if !ok {
			w = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if nh != h {
			w = time.Date(y, mo, d, nh, 0, 0, 0, time.UTC)
			continue
		}
		nm, ok := nextBit(s.set[fMinute], m, 59)
		if !ok {
			w = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
			continue
		}
		w = time.Date(y, mo, d, h, nm, 0, 0, time.UTC)
		return w, w.Before(hi)
	}
	return time.Time{}, false
}

func (s *Spec) dayMatches(d int, wd time.Weekday) bool {
	dom := s.set[fDom]&(1<<uint(d)) != 0
	dow := s.set[fDow]&(1<<uint(wd)) != 0
	if s.star[fDom] || s.star[fDow] {
		return dom && dow
	}
	return dom || dow
}

// nextBit returns the lowest set bit of set at or above from and at most
// max.
func nextBit(set uint64, from, max int) (int, bool) {
	if from > max {
		return 0, false
	}
	rest := set >> uint(from)
	if rest == 0 {
		return 0, false
	}
	v := from + bits.TrailingZeros64(rest)
	return v, v <= max
}
