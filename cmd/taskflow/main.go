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
//		args:    "<id> [--bar N]",          // synopsis after "taskflow foo"
//		summary: "one line for the verb list",
//		help:    "paragraphs; wrapped at 80 columns when printed",
//		run:     runFoo,
//	}
//
//	func runFoo(ctx context.Context, c *cli, args []string) error {
//		fs := c.flags()                    // --json, --redis, --prefix, --shards
//		bar := fs.Int("bar", 1, "what --bar does")
//		pos, err := c.parse(args)          // handles --help, mixes flags and args
//		...
//		m, err := c.connect(ctx)           // or c.connectExisting for read verbs
//		...
//	}
//
// and add fooVerb to the list below (one line). Errors: usagef(...) for
// bad usage (exit 2), any other error for a failure (exit 1); with --json
// both are printed as JSON. Durations use durationFlag (7d, 36h, 90m).
// Tests drive the built binary: see main_test.go.
func verbs() []*verb {
	return []*verb{
		listVerb,
		showVerb,
		eventsVerb,
		keysVerb,
		cancelVerb,
		resumeVerb,
		watchVerb,
		pruneVerb,
		tickVerb,
		runVerb,
		fsckVerb,
		demoVerb,
		benchVerb,
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
