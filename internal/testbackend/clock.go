package testbackend

import (
	"sync"
	"time"
)

// Clock is a settable clock for a test: a store or an engine reads it
// through taskflow.WithClock(c.Now), and the test moves it on with
// Advance instead of sleeping. It is safe for concurrent use, so the
// "processes" of one test may share it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to the present, in UTC, truncated to the
// millisecond (the precision the store keeps).
func NewClock() *Clock {
	return &Clock{now: time.Now().UTC().Truncate(time.Millisecond)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
