package main

import (
	"errors"
	"flag"
	"strconv"
	"strings"
	"time"
)

// parseDuration is the one duration syntax of every flag: a Go duration
// that may start with a number of days (7d, 1.5d, 1d12h, 36h, 90m, 300ms,
// 0). It refuses negative durations and more than 100 years.
func parseDuration(s string) (time.Duration, error) {
	bad := errors.New("want a duration such as 7d, 36h, 90m or 500ms")
	s = strings.TrimSpace(s)
	var d time.Duration
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || !(n >= 0 && n <= 100*365) {
			return 0, bad
		}
		d = time.Duration(n * float64(24*time.Hour))
		if rest == "" {
			return d, nil
		}
		s = rest
	}
	r, err := time.ParseDuration(s)
	if err != nil {
		return 0, bad
	}
	if r < 0 || strings.HasPrefix(s, "-") {
		return 0, errors.New("the duration is negative")
	}
	if d+r > 100*365*24*time.Hour {
		return 0, errors.New("the duration is over 100 years")
	}
	return d + r, nil
}

// durationFlag is a flag.Value read by parseDuration, so that every
// duration flag takes the same syntax.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d < 0 {
		return "" // unset (a required flag)
	}
	return fmtDuration(*f.d)
}

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// durationVar registers a duration flag with parseDuration's syntax.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(durationFlag{p}, name, usage)
}

// fmtDuration prints d the way parseDuration reads it, days first: 7d,
// 1d12h, 36m, 1.5s.
func fmtDuration(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDuration(-d)
	}
	short := func(d time.Duration) string {
		s := d.String()
		if strings.HasSuffix(s, "m0s") {
			s = s[:len(s)-2]
		}
		if strings.HasSuffix(s, "h0m") {
			s = s[:len(s)-2]
		}
		return s
	}
	const day = 24 * time.Hour
	if d < day {
		return short(d)
	}
	s := strconv.FormatInt(int64(d/day), 10) + "d"
	if rest := d % day; rest > 0 {
		s += short(rest)
	}
	return s
}

// fmtRelative says how far t is from now: "in 5m", "3h ago", rounded to
// seconds.
func fmtRelative(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d > 0:
		return "in " + fmtDuration(d)
	case d < 0:
		return fmtDuration(-d) + " ago"
	}
	return "now"
}
