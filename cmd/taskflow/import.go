package main

import (
	"context"
	"fmt"
	"io"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/importer"
)

var importVerb = &verb{
	name:    "import",
	args:    "--sqlite PATH [--dry-run]",
	summary: "import the original's SQLite flows (nexo-taskflow)",
	help: `Import the flows of the original nexo-taskflow from its SQLite database (its
flows, flow_steps and flow_events tables): every flow with its id, status,
revision, times, wait, state, cancel flag, steps and events in order, so a
timer resumes on time here and an external wait when its event arrives.
Each flow is written whole or not at all; flows already in the flow space
are left as they are, so running it again changes nothing (and completes an
interrupted import). A row that cannot be imported (bad JSON, an unknown
status, a string over the store's limits or not UTF-8, a revision over
99,999,999,999,999) is reported with its id and the reason and skipped;
the other rows are imported. The database is opened read-only. Times keep
milliseconds; only the newest 1000 events of a flow, and of them at most
1 MiB, are kept.

Exit status 0 when every row is imported or already there, 1 when a row
was skipped or conflicts with a flow already in the flow space.`,
	run: cmdImport,
}

func cmdImport(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	path := fs.String("sqlite", "", "`path` of the original's SQLite database (required)")
	dryRun := fs.Bool("dry-run", false, "read and check everything, write nothing, report what would be done")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *path == "" {
		return usagef("import: --sqlite PATH is required (see 'taskflow import --help')")
	}
	db, err := importer.Open(ctx, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := c.connect(ctx)
	if err != nil {
		return err
	}
	rep, err := importer.Import(ctx, db, m.Store(), importer.Options{DryRun: *dryRun})
	if err != nil {
		if rep != nil && rep.Rows > 0 && !c.json {
			_ = printImport(c.stdout, rep)
		}
		return fmt.Errorf("import stopped: %w", err)
	}
	if c.json {
		err = writeJSON(c.stdout, rep)
	} else {
		err = printImport(c.stdout, rep)
	}
	if err != nil {
		return err
	}
	if rep.Skipped+rep.Conflicts > 0 {
		fmt.Fprintf(c.stderr, "taskflow: %s not imported (see the list above)\n", plural(rep.Skipped+rep.Conflicts, "row"))
		return errReported
	}
	return nil
}

// printImport prints the summary line, then the rows that need a look.
func printImport(w io.Writer, r *importer.Report) error {
	verb := "imported"
	if r.DryRun {
		verb = "would import"
	}
	summary := fmt.Sprintf("%s: %s %d, unchanged %d, skipped %d, conflicts %d", plural(r.Rows, "row"), verb,
		r.Imported, r.Unchanged, r.Skipped, r.Conflicts)
	if r.Imported == 0 {
		summary = "nothing to import; " + summary
	}
	if r.DryRun {
		summary += " (dry run: nothing written)"
	}
	if _, err := fmt.Fprintln(w, summary); err != nil {
		return err
	}
	if len(r.Flows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := clitext.NewTable(w)
	fmt.Fprintln(tw, "FLOW\tOUTCOME\tREASON")
	for _, f := range r.Flows {
		reason := f.Reason
		for _, n := range f.Notes {
			if reason != "" {
				reason += "; "
			}
			reason += n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", clitext.Cell(f.ID, 40), f.Outcome, clitext.Cell(reason, 0))
	}
	return tw.Flush()
}
