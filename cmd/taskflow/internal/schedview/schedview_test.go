package schedview

import (
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

func TestWhenAndState(t *testing.T) {
	str := func(d time.Duration) string { return d.String() }
	cases := []struct {
		sc          taskflow.Schedule
		when, state string
	}{
		{taskflow.Schedule{ScheduleInput: taskflow.ScheduleInput{Cron: "0 8 * * MON-FRI", TimeZone: "Europe/Madrid"}}, "0 8 * * MON-FRI (Europe/Madrid)", "active"},
		{taskflow.Schedule{ScheduleInput: taskflow.ScheduleInput{Cron: "@hourly", Paused: true}}, "@hourly (UTC)", "paused"},
		{taskflow.Schedule{ScheduleInput: taskflow.ScheduleInput{Every: 90 * time.Second, Paused: true}, Done: true}, "every 1m30s", "done"},
	}
	for _, c := range cases {
		if got := When(&c.sc, str); got != c.when {
			t.Errorf("When = %q, want %q", got, c.when)
		}
		if got := State(&c.sc); got != c.state {
			t.Errorf("State = %q, want %q", got, c.state)
		}
	}
}
