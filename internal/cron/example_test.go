package cron_test

import (
	"fmt"
	"time"

	"github.com/taskflow-dev/taskflow/internal/cron"
)

// next prints the n fires of expr after `after` in loc.
func next(expr string, after time.Time, loc *time.Location, n int) {
	spec, err := cron.Parse(expr)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s (%s):\n", spec, loc)
	for t := after; n > 0; n-- {
		t = spec.Next(t, loc)
		fmt.Printf("  %s = %s\n", t.Format("2006-01-02 15:04 MST"), t.UTC().Format("15:04 UTC"))
	}
}

// Parse an expression and list its next fires in a time zone, through the
// nights the clocks change.
func Example() {
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		fmt.Println(err)
		return
	}
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		fmt.Println(err)
		return
	}

	// Fall back: a restricted hour runs once, at the first 01:30;
	// a "*" hour follows real time through both 01:xx hours.
	fallBack := time.Date(2026, 11, 1, 0, 50, 0, 0, newYork)
	next("30 1 * * *", fallBack, newYork, 2)
	next("*/30 * * * *", fallBack, newYork, 5)

	// Spring forward: 02:30 does not exist and runs at 03:30 instead.
	next("30 2 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, madrid), madrid, 2)

	// Errors name the field.
	_, err = cron.Parse("0 25 * * MON-FRI")
	fmt.Println(err)
	// Output:
	// 30 1 * * * (America/New_York):
	//   2026-11-01 01:30 EDT = 05:30 UTC
	//   2026-11-02 01:30 EST = 06:30 UTC
	// */30 * * * * (America/New_York):
	//   2026-11-01 01:00 EDT = 05:00 UTC
	//   2026-11-01 01:30 EDT = 05:30 UTC
	//   2026-11-01 01:00 EST = 06:00 UTC
	//   2026-11-01 01:30 EST = 06:30 UTC
	//   2026-11-01 02:00 EST = 07:00 UTC
	// 30 2 * * * (Europe/Madrid):
	//   2026-03-29 03:30 CEST = 01:30 UTC
	//   2026-03-30 02:30 CEST = 00:30 UTC
	// cron: "0 25 * * MON-FRI": hour field: value 25 out of range 0-23
}
