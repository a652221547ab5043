// Command taskflow is the operator CLI of the taskflow library: it lists,
// inspects, cancels and resumes the flows kept in Redis, runs the wait
// engine, prunes old flows, checks the flow space, and plays a
// self-checking demo fleet.
//
// Usage:
//
//	taskflow <verb> [flags] [args]
//	taskflow help [<verb>]
//	taskflow --version
//
// Every verb's synopsis, description and flags are printed by
// 'taskflow help <verb>' (or 'taskflow <verb> --help'); they are written
// once, in the verb's file, and nowhere else. The README's CLI section
// walks through them with examples.
//
// Exit status: 0 on success, 1 when the operation fails (Redis
// unreachable, flow not found, nothing to resume, a failed check), 2 on
// bad usage (unknown verb or flag, missing or extra argument, an id that
// is not a UUID).
package main

import (
	"os"
)

// verbs lists the CLI's verbs in the order 'taskflow help' shows them.
//
// How to add a verb: create <name>.go holding
//
//	var fooVerb = &verb{
//		name:    "foo",
//		args:    "<id> [--bar N]",  // the synopsis after "taskflow foo"
//		summary: "one line for the verb list",
//		help:    `Paragraphs, wrapped at 80 columns when printed; lines
//	indented by two spaces (examples) are kept as they are.`,
//		run: runFoo,
//	}
//
//	func runFoo(ctx context.Context, c *cli, args []string) error {
//		fs := c.flags()              // registers --json, --redis, --prefix, --shards
//		bar := fs.Int("bar", 1, "what --bar does")
//		var d time.Duration
//		durationVar(fs, &d, "for", 0, "a duration `D`") // 7d, 36h, 90m: one syntax
//		pos, err := c.parse(args)    // --help, flags mixed with arguments
//		if err != nil {
//			return err
//		}
//		if err := c.wantArgs(pos, "<id>"); err != nil {
//			return err
//		}
//		m, err := c.connectExisting(ctx) // refuses a missing flow space;
//		// c.connectWarn serves it with a warning (engines, servers)
//		...
//	}
//
// then add fooVerb to the list below: one line. Return usagef(...) for
// bad usage (exit status 2) and any other error for a failure (exit
// status 1): both are printed on one line, or as JSON with --json.
// Print results on c.stdout (writeJSON when c.json), warnings with
// c.warnf. Test through the built binary (runCLI, eachBackend in
// main_test.go); 'taskflow help foo' is checked for 80 columns and --flag
// spelling by TestHelpVerbVersion without more work.
func verbs() []*verb {
	return []*verb{
		listVerb,
		showVerb,
		explainVerb,
		stuckVerb,
		eventsVerb,
		keysVerb,
		cancelVerb,
		resumeVerb,
		watchVerb,
		pruneVerb,
		tickVerb,
		runVerb,
		scheduleVerb,
		limitsVerb,
		fsckVerb,
		statsVerb,
		serveVerb,
		uiVerb,
		mcpVerb,
		importVerb,
		demoVerb,
		benchVerb,
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
