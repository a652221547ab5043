package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/taskflow-dev/taskflow/agenttool"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/mcpserver"
)

var mcpVerb = &verb{
	name:    "mcp",
	args:    "[--transport stdio|http] [--addr A] [--agent ID]",
	summary: "serve the agent tool, flows and notifications over MCP",
	help: `Serve the agent tool over the Model Context Protocol: the tools (one per
action, or --tools combined), every flow of the session as
taskflow://flow/<id>, and change notifications for subscribed flows. Over
stdio (the default; a host spawns it) or streamable HTTP on --addr at ` + mcpserver.DefaultPath + `.
Each MCP session is one taskflow session of agent --agent: its id is
--session-id when given, else the --session-header a client sends (HTTP),
else the MCP session's own. It runs until the client closes stdin, or SIGINT
or SIGTERM. Logs go to stderr: stdout belongs to the protocol on stdio.`,
	run: cmdMCP,
}

// cmdMCP is the mcp verb: a thin wrapper over mcpserver.Serve.
func cmdMCP(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	transport := fs.String("transport", mcpserver.TransportStdio, "the `TRANSPORT`: stdio or http")
	addr := fs.String("addr", mcpserver.DefaultAddr, "HTTP listen `address`")
	agent := fs.String("agent", envOr("TASKFLOW_MCP_AGENT", "mcp"), "agent `id` of every session (env TASKFLOW_MCP_AGENT)")
	session := fs.String("session-id", os.Getenv("TASKFLOW_MCP_SESSION"), "fixed session `id` of every MCP session (env TASKFLOW_MCP_SESSION)")
	header := fs.String("session-header", "", "HTTP `header` by which a client names its session (only behind a trusted host)")
	tools := fs.String("tools", "actions", "the `SET` of tools: actions (one per action) or combined (one taking an action)")
	maxWatches := fs.Int("max-watches", mcpserver.DefaultMaxWatches, "flows watched at once for subscribed sessions; a subscription to one more is refused")
	horizon := new(time.Duration)
	durationVar(fs, horizon, "max-horizon", agenttool.DefaultTimerMaxHorizon, "how far ahead a timer wait may be set")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	set := agenttool.PerAction
	switch *tools {
	case "actions":
	case "combined":
		set = agenttool.Combined
	default:
		return usagef("mcp: --tools %q is neither actions nor combined", *tools)
	}
	if *maxWatches < 1 {
		return usagef("mcp: --max-watches %d is below 1", *maxWatches)
	}
	if *transport != mcpserver.TransportStdio && *transport != mcpserver.TransportHTTP {
		return usagef("mcp: --transport %q is neither stdio nor http", *transport)
	}
	m, err := c.connectWarn(ctx)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := mcpserver.Config{
		Manager: m, AgentID: *agent, SessionID: *session, SessionHeader: *header, Tools: set,
		ToolOptions: []agenttool.Option{agenttool.WithTimerMaxHorizon(*horizon)},
		Transport:   *transport, Addr: *addr, MaxWatches: *maxWatches,
		// stdout is the protocol's on stdio: logs go to stderr.
		Logger: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Ready: func(a string) {
			fmt.Fprintf(c.stderr, "taskflow mcp: serving streamable HTTP on http://%s%s\n", a, mcpserver.DefaultPath)
		},
	}
	return mcpserver.Serve(ctx, cfg)
}
