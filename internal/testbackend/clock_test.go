package testbackend

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := NewClock()
	start := c.Now()
	if start.Location() != time.UTC || !start.Equal(start.Truncate(time.Millisecond)) {
		t.Fatalf("NewClock: %v, want UTC to the millisecond", start)
	}
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("after Advance(90s) the clock moved %v", got)
	}
}
