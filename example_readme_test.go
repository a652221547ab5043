package taskflow_test

// The README's Go snippets, each the whole body of an example here (or in
// the example_readme_test.go of agenttool or of extra/*), so the tests
// compile every one of them as it reads; TestReadmeGoSnippets checks the
// README against these bodies. The names a snippet takes from its surroundings are the
// package-level variables below. They are compiled, not run.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/fsck"
)

var (
	ctx      = context.Background()
	addr     string
	m        *taskflow.Manager
	id       uuid.UUID
	msgID    string
	owner    string
	hostname string
	workerID string
	patch    map[string]any
	result   map[string]any
)

func callModel(context.Context, *taskflow.Flow) (map[string]any, error) { return nil, nil }
func handleReply(json.RawMessage)                                       {}

func Example_readmeWaits() {
	m.SetWaiting(ctx, id, taskflow.WaitTimer(time.Now().Add(48*time.Hour)))
	m.SetWaiting(ctx, id, taskflow.WaitExternalEvent("email.reply", "msg-8812"))
	m.SetWaiting(ctx, id, taskflow.WaitManual())
}

func Example_readmeEngine() {
	engine := taskflow.NewWaitEngine(m)
	go engine.Run(ctx, 5*time.Second) // timers and cancel requests
	go engine.RunResumeBridge(ctx)    // external events published by anyone
}

func Example_readmeEarlyEvent() {
	f, _ := m.SetWaiting(ctx, id, taskflow.WaitExternalEvent("email.reply", msgID))
	if f.Status == taskflow.StatusRunning { // the reply had already arrived
		handleReply(f.State) // the state has "resume_event"
	}
}

func Example_readmeWorker() {
	workerID := "triage-" + hostname
	for ctx.Err() == nil {
		f, lease, err := m.Claim(ctx, "kate/inbox-triage", workerID, 2*time.Minute)
		if err != nil || f == nil {
			continue // nothing became ready within the claim wait (30 s)
		}
		// ... do the step; call m.Extend(ctx, lease, 2*time.Minute) if it runs long ...
		f, err = m.UpdateState(ctx, f.ID, patch, "summarised", taskflow.WithLease(lease))
		if errors.Is(err, taskflow.ErrLeaseLost) {
			continue // we stalled and someone else owns the flow now: drop our work
		}
		// then one of:
		m.SetWaiting(ctx, f.ID, taskflow.WaitExternalEvent("email.reply", msgID), taskflow.WithLease(lease))
		m.Finish(ctx, f.ID, result, taskflow.WithLease(lease))
		m.Release(ctx, lease) // still running, but give it to another worker
	}
	m.Close() // Claim's subscriptions
}

func Example_readmeHandOff() {
	for ctx.Err() == nil {
		f, lease, err := m.Claim(ctx, "kate/inbox-triage", workerID, 2*time.Minute)
		for f != nil && err == nil {
			out, _ := callModel(ctx, f)
			_, err = m.Finish(ctx, f.ID, out, taskflow.WithLease(lease),
				taskflow.WithNext(&f, &lease, 2*time.Minute)) // f, lease: the next flow, or nil
		}
	}
}

func Example_readmeAutoPipeline() {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true,
		AutoPipelineOptions: &redis.AutoPipelineOptions{}}) // go-redis's defaults
	store, err := taskflow.NewRedisStore(rdb)
	if err != nil {
		log.Fatal(err)
	}
	m = taskflow.NewManager(store) // its scripts go through rdb's AutoPipeliner
}

func Example_readmeIdempotentCreate() {
	f, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: "shop/fulfil", Goal: "ship order 12345", OwnerSessionKey: owner,
		IdempotencyKey: "order-12345",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.ID) // the same id however often this runs
}

func Example_readmeRetry() {
	policy := taskflow.RetryPolicy{MaxAttempts: 5, Base: time.Second, Cap: 5 * time.Minute}
	for ctx.Err() == nil {
		f, lease, err := m.Claim(ctx, "kate/summarize", workerID, 2*time.Minute)
		if err != nil || f == nil {
			continue
		}
		out, err := callModel(ctx, f)
		if err != nil { // transient: back off, or give up after the last attempt
			f, err = m.RetryLater(ctx, f.ID, policy, err.Error(), taskflow.WithLease(lease))
			// f.Status is waiting (a timer the engine resumes) or failed
			continue
		}
		m.ResetAttempts(ctx, f.ID, taskflow.WithLease(lease)) // the next step gets the whole budget
		m.Finish(ctx, f.ID, out, taskflow.WithLease(lease))
	}
}

func Example_readmeStats() {
	st, err := m.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Flows[taskflow.StatusWaiting])                        // flows by status (every status present)
	fmt.Println(st.Ready)                                                // per controller: Depth, OldestAge (time the oldest ready flow has waited)
	fmt.Println(st.Timers.Lag, st.Timers.Due, st.Timers.Pending)         // tick lag: how late the most overdue timer is (0 when none is due)
	fmt.Println(st.Leases.Held, st.Leases.Expired, st.Leases.ExpiredLag) // expired = not yet collected by a tick
	fmt.Println(st.Bridge.Length, st.Bridge.Backlog, st.Bridge.Pending)  // the resume bridge's stream
	fmt.Println(st.EarlyEvents)                                          // early events: external events kept for a flow not yet waiting
}

func Example_readmeFsck() {
	rep, err := m.Verify(ctx, fsck.WithRepair())
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range rep.Problems {
		fmt.Println(p.Kind, p.Key, p.Detail, p.Repaired)
	}
	if n := rep.Unrepaired(); n > 0 {
		log.Printf("%d problems need a person", n)
	}
}

func Example_readmeChildren() {
	var kids []taskflow.ChildInput
	for _, ch := range []string{"ch-1", "ch-2", "ch-3"} {
		kids = append(kids, taskflow.ChildInput{Key: ch, Flow: taskflow.CreateManagedInput{
			ControllerID: "kate/chapter", Goal: "translate " + ch, OwnerSessionKey: owner,
		}})
	}
	m.StartChildren(ctx, id, kids) // idempotent per (parent, key)
	f, _ := m.SetWaiting(ctx, id, taskflow.WaitChildren(taskflow.Join{Need: 2, FailFast: true}))
	fmt.Println(f.Status) // waiting; running at once if the join was already met
}

func Example_readmeSchedules() {
	s, err := m.CreateSchedule(ctx, taskflow.ScheduleInput{
		Name:     "inbox/triage",
		Cron:     "0 8 * * MON-FRI", // every weekday at 8:00
		TimeZone: "Europe/Madrid",
		Overlap:  taskflow.OverlapSkip, // the default: no second triage while one runs
		CatchUp:  taskflow.CatchUpLast, // the default: after downtime one run, not a burst
		Flow: taskflow.CreateManagedInput{
			ControllerID: "kate/triage", Goal: "triage the inbox", OwnerSessionKey: owner,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.NextFire)                          // the next 8:00 in Madrid, in UTC
	m.PauseSchedule(ctx, "inbox/triage", "holidays") // no fires until ResumeSchedule
	m.TriggerSchedule(ctx, "inbox/triage")           // one run now, whatever the policies
}

func Example_readmeFind() {
	f, _ := m.CreateManaged(ctx, taskflow.CreateManagedInput{
		ControllerID: "kate/bible-upload", Goal: "upload chapter 7", OwnerSessionKey: owner,
		Attributes: map[string]string{"customer": "acme", "chapter": "7"},
	})
	f, _ = m.SetAttributes(ctx, f.ID, map[string]string{"priority": "2"}, []string{"chapter"})
	filter := taskflow.Filter{Controller: "kate/bible-upload", Attribute: "customer=acme", Status: taskflow.StatusRunning}
	page, _ := m.Find(ctx, filter, taskflow.WithLimit(50))
	for page.Next != "" { // follow the cursor; a page may hold fewer flows than the limit
		page, _ = m.Find(ctx, filter, taskflow.WithLimit(50), taskflow.WithCursor(page.Next))
	}
}

func Example_readmeGate() {
	m.SetKeyLimit(ctx, taskflow.KeyLimit{Key: "tenant:acme", Concurrency: 3})              // 3 of its flows leased at once
	m.SetKeyLimit(ctx, taskflow.KeyLimit{Key: "model:gpt-x", Rate: 500, Per: time.Minute}) // 500 claims a minute
	m.SetKeyLimit(ctx, taskflow.KeyLimit{Key: "tenant:big", Concurrency: 20, Weight: 3})   // 3 turns to another group's 1
	f, _ := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: "kate/inbox-triage", Goal: "triage a reply", OwnerSessionKey: owner,
		Concurrency: []string{"tenant:acme", "model:gpt-x"}, // the first names its fair group
	})
	m.SetConcurrency(ctx, f.ID, []string{"tenant:acme", "model:gpt-x"}, 5) // a person waits: ahead of priority 0
	use, _ := m.KeyLimits(ctx)
	for _, u := range use {
		fmt.Println(u.Key, u.InFlight, u.Concurrency, u.Backlog) // in flight now, its bound, flows waiting in its group
	}
	x, _ := m.Explain(ctx, f.ID) // code "gated"; held_by "tenant:acme concurrency" while 3 are in flight
	fmt.Println(x.Text)
	m.DeleteKeyLimit(ctx, "model:gpt-x") // no bound from the next claim
}
