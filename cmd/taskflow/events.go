package main

import (
	"context"
)

var eventsVerb = &verb{
	name:    "events",
	args:    "<id> [--limit N]",
	summary: "list a flow's audit events, newest first",
	help: `List a flow's audit events, newest first: id, kind, the revision it produced,
time and payload. A cancel made with 'taskflow cancel' names its actor and
reason in the payload.`,
	run: cmdEvents,
}

func cmdEvents(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	limit := fs.Int("limit", 50, "how many events, at least 1")
	m, id, err := c.flowArg(ctx, args)
	if err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("--limit %d is below 1", *limit)
	}
	if _, err := getFlow(ctx, m, id); err != nil {
		return err
	}
	events, err := m.ListEvents(ctx, id, *limit)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.stdout, jsonEvents(events))
	}
	return printEvents(c.stdout, events, "")
}
