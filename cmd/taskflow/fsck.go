package main

import (
	"context"
	"fmt"
	"io"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
	"github.com/taskflow-dev/taskflow/fsck"
)

var fsckVerb = &verb{
	name:    "fsck",
	args:    "[--repair]",
	summary: "check (and with --repair fix) the flow space's invariants",
	help: `Check the invariants of the flow space, shard by shard: every flow is in its
status's index and its owner's and in no other; waits, timers, cancel requests
and correlation entries agree with the flow records; the newest audit event
carries the flow's revision; step sets and step records agree; no key is left
of a flow that does not exist. Flows that change while fsck runs are re-read
before a problem is reported, so it is safe beside workers.

With --repair, indexes are rebuilt from the flow records, stale entries
dropped and orphan keys deleted; flow records and audit logs are never
changed, so problems in them are reported and left for a person.

The summary names the flow space and the server. A prefix with no flow space
there is an error naming the flow spaces that do exist (found by a SCAN for
*:{meta}:layout), not a clean bill of health.

Exit status 0 when the space is clean, 1 when a problem was found (with
--repair: when a problem is left unrepaired) or the space does not exist.`,
	run: cmdFsck,
}

func cmdFsck(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	repair := fs.Bool("repair", false, "fix what can be fixed: rebuild index entries, delete orphan keys")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	var opts []fsck.Option
	if *repair {
		opts = append(opts, fsck.WithRepair())
	}
	rep, err := m.Verify(ctx, opts...)
	if err != nil {
		// Shards checked (and, with --repair, repaired) before the error
		// are in the partial report: show them to a person.
		if rep != nil && !c.json && (rep.Flows > 0 || rep.Keys > 0) {
			_ = printFsck(c.stdout, rep, *repair, true)
		}
		return fmt.Errorf("fsck stopped: %w", err)
	}
	if c.json {
		err = writeJSON(c.stdout, rep)
	} else {
		fmt.Fprintf(c.stdout, "flow space %q at %s\n", c.prefix, serverName(c.redisURL))
		err = printFsck(c.stdout, rep, *repair, false)
	}
	if err != nil {
		return err
	}
	switch left := rep.Unrepaired(); {
	case rep.OK():
		return nil
	case !*repair:
		return fmt.Errorf("fsck found %s; 'taskflow fsck --repair' fixes the index and orphan ones",
			plural(len(rep.Problems), "problem"))
	case left > 0:
		return fmt.Errorf("%d of %s could not be repaired (flow records, audit logs and unknown keys are left to a person)",
			left, plural(len(rep.Problems), "problem"))
	}
	return nil
}

// printFsck prints the report: a summary line, then the problems. A
// partial report is what Verify found before it stopped on an error.
func printFsck(w io.Writer, r *fsck.Report, repair, partial bool) error {
	summary := fmt.Sprintf("shards %d, flows %d, keys %d: ", r.Shards, r.Flows, r.Keys)
	if partial {
		summary = fmt.Sprintf("stopped early; before the error: flows %d, keys %d: ", r.Flows, r.Keys)
	}
	switch {
	case r.OK():
		summary += "no problems"
	case repair:
		summary += fmt.Sprintf("%s, %d repaired", plural(len(r.Problems), "problem"), len(r.Problems)-r.Unrepaired())
	default:
		summary += plural(len(r.Problems), "problem")
	}
	if _, err := fmt.Fprintln(w, summary); err != nil {
		return err
	}
	if r.OK() {
		return nil
	}
	fmt.Fprintln(w)
	tw := clitext.NewTable(w)
	// MEMBER names the entry at fault inside KEY (a schedule's name, a
	// stale index entry): without it a schedule problem names no schedule.
	fmt.Fprintln(tw, "KIND\tFLOW\tKEY\tMEMBER\tDETAIL\tREPAIRED")
	for _, p := range r.Problems {
		repaired := "no"
		if p.Repaired {
			repaired = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clitext.Cell(string(p.Kind), 0), clitext.Cell(p.FlowID, 0), clitext.Cell(p.Key, 0), clitext.Cell(p.Member, 0), clitext.Cell(p.Detail, 0), repaired)
	}
	return tw.Flush()
}

// plural formats n and a noun that takes an s.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
