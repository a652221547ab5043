package bench

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// TestLimitsSuite runs the limits suite, quick, one round, on a private
// server: every variant drains all its flows (the suite checks each
// finished and no slot is left), and the table shows what the gate costs:
// four scripts per claim + finish with keys (admission, take, finish,
// release), two without, about one with WithNext.
func TestLimitsSuite(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("no redis-server binary")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := Run(ctx, Config{RedisURL: testbackend.RedisURL(), Suites: []string{SuiteLimits}, Rounds: 1, Quick: true}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"=== limits", "claim + finish flows/s", "Redis time/flow (us)", "client CPU/flow (us)",
		"claim + finish flows/s, on 1 key / off", "claim + finish flows/s, on 2 keys / off", "Where the drain's Redis time goes"} {
		if !strings.Contains(out.String(), h) {
			t.Errorf("output lacks %q", h)
		}
	}
	// variant, then 5 figures, then scripts/flow.
	for variant, want := range map[string]float64{
		"off: no keys": 2, "on: 1 key (tenant)": 4, "on: 2 keys (tenant, model)": 4, "off: no keys, Finish WithNext": 1,
	} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(variant) + `\s+(?:[\d,.]+\s+){5}([\d.]+)\s`)
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			t.Errorf("no row for %q", variant)
			continue
		}
		got, _ := strconv.ParseFloat(m[1], 64)
		if got < want || got > want+0.2 {
			t.Errorf("%s: %v scripts per flow, want about %v", variant, got, want)
		}
	}
	if !regexp.MustCompile(`on 1 key / off\s+[\d.]+x\s+≥ 0\.90x\s+(ok|MISSED)`).MatchString(out.String()) {
		t.Error("no verdict on the 0.9x target")
	}
}
