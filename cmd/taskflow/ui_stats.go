package main

import (
	"context"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/ui"
)

// overviewStats feeds the dashboard's overview from the library's Stats.
func overviewStats(m *taskflow.Manager) ui.StatsFunc {
	return func(ctx context.Context) (*ui.Overview, error) {
		st, err := m.Stats(ctx)
		if err != nil {
			return nil, err
		}
		return overviewOf(st), nil
	}
}

// overviewOf maps Stats onto what the overview shows.
func overviewOf(st *taskflow.Stats) *ui.Overview {
	o := &ui.Overview{
		TickLag:       st.Timers.Lag,
		LeasesHeld:    st.Leases.Held,
		LeasesExpired: st.Leases.Expired,
		BridgeBacklog: st.Bridge.Backlog,
		BridgePending: st.Bridge.Pending,
		EarlyEvents:   st.EarlyEvents,
		Joining:       st.Joining,
		Relay:         st.Relay,
		RelayDue:      st.RelayDue,
		ReadyStale:    st.ReadyStale,
		StaleAfter:    st.StaleAfter,

		Schedules:       st.Schedules,
		SchedulesPaused: st.SchedulesPaused,
		SchedulesDue:    st.SchedulesDue,
		ScheduleLag:     st.ScheduleLag,
	}
	for _, s := range taskflow.Statuses() {
		o.Statuses = append(o.Statuses, ui.StatusCount{Status: string(s), Count: st.Flows[s]})
	}
	for _, q := range st.Ready {
		o.Ready = append(o.Ready, ui.ReadyQueue{Controller: q.Controller, Depth: q.Depth, OldestAge: q.OldestAge, Stale: q.Stale})
	}
	return o
}
