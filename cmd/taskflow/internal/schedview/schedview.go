// Package schedview holds the words `taskflow schedule` and the
// dashboard's Schedules pages both use for a schedule: when it fires and
// whether it is active, paused or done.
package schedview

import (
	"time"

	"github.com/taskflow-dev/taskflow"
)

// When says when a schedule fires: its cron expression and time zone
// (UTC when none is set), or its interval written by every.
func When(sc *taskflow.Schedule, every func(time.Duration) string) string {
	if sc.Cron != "" {
		tz := sc.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		return sc.Cron + " (" + tz + ")"
	}
	return "every " + every(sc.Every)
}

// State is "done" for a schedule past its end, "paused" for a paused one,
// and "active" otherwise.
func State(sc *taskflow.Schedule) string {
	switch {
	case sc.Done:
		return "done"
	case sc.Paused:
		return "paused"
	}
	return "active"
}
