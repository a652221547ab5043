// Command taskflow is the operator CLI of the taskflow library: it lists,
// inspects, cancels and resumes the flows kept in Redis, runs the wait
// engine, prunes old flows, and plays a self-checking demo fleet.
//
// Usage:
//
//	taskflow <verb> [flags] [args]
//
// Verbs:
//
//	list    [--status S]... [--owner KEY] [--limit N] [--cursor C]
//	        flows, most recent status change first; --status is repeatable
//	        or a comma list; with --owner the owner's flows (newest created
//	        first) are filtered by status client-side, so a page may hold
//	        fewer than --limit rows while a next cursor is still printed
//	show    <id>                 a flow, its state, steps and latest 20 events
//	events  <id> [--limit N]     a flow's audit events, newest first
//	cancel  <id>                 cancel a non-terminal flow
//	resume  <id>                 resume a waiting flow (manual unblock)
//	watch   [<id>] [--count N] [--for D]
//	                             stream a flow's audit events (without an
//	                             id: every flow's) as they are appended,
//	                             until SIGINT or SIGTERM, N events or D
//	prune   --older-than D       delete terminal flows last updated more than
//	                             D ago (Go duration or days: 7d, 1d12h, 36h)
//	tick                         run one wait-engine tick and print its report
//	run     [--interval D]       run the wait engine and the resume bridge
//	                             until SIGINT or SIGTERM
//	demo    [--flows N] [--workers N]
//	                             play a fleet of workers against an embedded
//	                             Redis (or --redis) and check the invariants
//	fsck    [--repair]           check the flow space's invariants (indexes,
//	                             waits, events, steps, orphan keys); with
//	                             --repair rebuild indexes and delete orphans.
//	                             Exit status 1 when a problem is found (with
//	                             --repair: when one is left unrepaired)
//	bench   [--suites S] [--rounds N] [--quick] [--cluster-addrs A]
//	                             run the benchmarks on private redis-servers
//	                             and print medians and ratios
//	mcp     [--transport stdio|http] [--addr A] [--agent ID] [--session-id ID]
//	                             serve the agent tool over MCP (see mcp.go)
//
// Every verb takes:
//
//	--json        machine-readable output
//	--redis URL   Redis URL (env TASKFLOW_REDIS_URL, default
//	              redis://127.0.0.1:6379/0; rediss:// for TLS). A Redis
//	              Cluster is named by one node in the URL and more in
//	              addr= parameters (go-redis's cluster URL form), e.g.
//	              redis://127.0.0.1:7101?addr=127.0.0.1:7102&addr=127.0.0.1:7103
//	--prefix P    key prefix (env TASKFLOW_PREFIX, default taskflow)
//	--shards N    shard count (env TASKFLOW_SHARDS, default 16); it must be
//	              the one the workers use
//	-h, --help    the verb's usage
//
// Flags may come before or after the arguments. Errors are printed on one
// line to stderr. Exit status: 0 on success, 1 when the operation fails
// (Redis unreachable, flow not found, nothing to resume, a failed check),
// 2 on bad usage (unknown verb, bad flag, missing or extra argument, an id
// that is not a UUID).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// verb is one subcommand.
type verb struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

func verbs() []verb {
	return []verb{
		{"list", "list flows, most recent status change first", cmdList},
		{"show", "show a flow, its state, steps and latest events", cmdShow},
		{"events", "list a flow's audit events", cmdEvents},
		{"cancel", "cancel a flow", cmdCancel},
		{"resume", "resume a waiting flow (manual unblock)", cmdResume},
		{"watch", "stream audit events as they are appended", cmdWatch},
		{"prune", "delete old terminal flows", cmdPrune},
		{"tick", "run one wait-engine tick", cmdTick},
		{"run", "run the wait engine and the resume bridge", cmdRun},
		{"demo", "play a fleet of workers and check the invariants", cmdDemo},
		{"fsck", "check (and with --repair fix) the flow space's invariants", cmdFsck},
		{"bench", "run the benchmarks (medians and ratios measured in one run)", cmdBench},
		{"mcp", "serve the agent tool, flows and notifications over MCP", cmdMCP},
	}
}

// run is the whole program: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	// go-redis logs dial failures on its own; the CLI reports them once.
	redis.SetLogger(quietLogger{})
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		printUsage(stdout)
		return 0
	}
	for _, v := range verbs() {
		if v.name == name {
			c := &cli{stdout: stdout, stderr: stderr}
			defer c.close()
			return c.exitCode(v.run(context.Background(), c, args[1:]))
		}
	}
	fmt.Fprintf(stderr, "taskflow: unknown verb %q\n", name)
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: taskflow <verb> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "verbs:")
	tw := newTable(w)
	for _, v := range verbs() {
		fmt.Fprintf(tw, "  %s\t%s\n", v.name, v.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'taskflow <verb> --help' for a verb's flags.")
}

// Errors that decide the exit status.
var (
	// errHelp: the usage was printed on request.
	errHelp = errors.New("help requested")
	// errReported: the verb already said what went wrong.
	errReported = errors.New("failure already reported")
)

// usageError is bad usage: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode prints err (if any) as one line and maps it to a status.
func (c *cli) exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errReported):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "taskflow: %s\n", oneLine(ue.msg))
		return 2
	default:
		fmt.Fprintf(c.stderr, "taskflow: %s\n", oneLine(cleanError(err)))
		return 1
	}
}

// cleanError drops the library's "taskflow: " and "invalid data: "
// prefixes, which say nothing to a person at a terminal.
func cleanError(err error) string {
	msg := err.Error()
	for _, p := range []string{"taskflow: ", "invalid data: "} {
		msg = strings.ReplaceAll(msg, ": "+p, ": ")
		for strings.HasPrefix(msg, p) {
			msg = strings.TrimPrefix(msg, p)
		}
	}
	return msg
}

// quietLogger silences go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Connection defaults.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/0"
	pingTimeout     = 3 * time.Second
)

// cli holds one invocation's output streams, common flags and connection.
type cli struct {
	stdout, stderr io.Writer

	json     bool
	redisURL string
	prefix   string
	shards   int

	verb     string
	synopsis string
	summary  string
	fs       *flag.FlagSet
	envErr   error
	closers  []func()
}

// flags returns the verb's FlagSet with the common flags registered.
// synopsis is the argument part of the usage line, e.g. "<id>".
func (c *cli) flags(name, synopsis, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c.verb, c.synopsis, c.summary, c.fs = name, synopsis, summary, fs
	fs.BoolVar(&c.json, "json", false, "machine-readable JSON output")
	fs.StringVar(&c.redisURL, "redis", envOr("TASKFLOW_REDIS_URL", defaultRedisURL),
		"Redis `URL`, redis:// or rediss:// (env TASKFLOW_REDIS_URL); a Redis Cluster as one node\n"+
			"plus addr= parameters, e.g. redis://127.0.0.1:7101?addr=127.0.0.1:7102&addr=127.0.0.1:7103")
	fs.StringVar(&c.prefix, "prefix", envOr("TASKFLOW_PREFIX", taskflow.DefaultPrefix),
		"key `prefix` of the flow space (env TASKFLOW_PREFIX)")
	shards := taskflow.DefaultShards
	if v := os.Getenv("TASKFLOW_SHARDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			c.envErr = usagef("TASKFLOW_SHARDS=%q is not a number", v)
		}
		shards = n
	}
	fs.IntVar(&c.shards, "shards", shards,
		"shard `count` of the flow space (env TASKFLOW_SHARDS); must match the workers'")
	return fs
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parse parses args with c.fs, letting flags and arguments mix, and
// returns the arguments. --help prints the usage and returns errHelp.
func (c *cli) parse(args []string) ([]string, error) {
	var pos []string
	for {
		err := c.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printHelp()
			return nil, errHelp
		}
		if err != nil {
			return nil, usagef("%s: %v (see 'taskflow %s --help')", c.verb, err, c.verb)
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		// After "--" everything is an argument.
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.envErr != nil {
		return nil, c.envErr
	}
	if c.shards < 1 || c.shards > taskflow.MaxShards {
		return nil, usagef("--shards %d is outside 1..%d", c.shards, taskflow.MaxShards)
	}
	return pos, nil
}

func (c *cli) printHelp() {
	fmt.Fprintf(c.stdout, "usage: taskflow %s %s\n\n%s\n\nflags:\n", c.verb, c.synopsis, c.summary)
	c.fs.SetOutput(c.stdout)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// isSet reports whether the flag name was given on the command line.
func (c *cli) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// wantArgs checks the number of arguments.
func (c *cli) wantArgs(pos []string, names ...string) error {
	if len(pos) < len(names) {
		return usagef("%s: missing %s (usage: taskflow %s %s)", c.verb, names[len(pos)], c.verb, c.synopsis)
	}
	if len(pos) > len(names) {
		return usagef("%s: unexpected argument %q (usage: taskflow %s %s)", c.verb, pos[len(names)], c.verb, c.synopsis)
	}
	return nil
}

// parseID reads a flow id argument.
func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, usagef("%q is not a flow id (want a UUID)", s)
	}
	return id, nil
}

// connect opens the Redis client named by --redis, checks that Redis
// answers, and returns a manager on the flow space.
func (c *cli) connect(ctx context.Context) (*taskflow.Manager, error) {
	return c.connectURL(ctx, c.redisURL, c.prefix)
}

func (c *cli) connectURL(ctx context.Context, rawURL, prefix string) (*taskflow.Manager, error) {
	client, err := c.dial(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	return newManager(client, prefix, c.shards)
}

// dial opens a client on rawURL and pings it: a cluster client when the
// URL names more nodes with addr= parameters, a plain client otherwise.
func (c *cli) dial(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	if isClusterURL(rawURL) {
		return c.dialCluster(ctx, rawURL)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, badURL(rawURL, err)
	}
	if err := probe(ctx, *opts); err != nil {
		return nil, fmt.Errorf("cannot reach Redis at %s: %s", opts.Addr, unreachable(err, opts.TLSConfig != nil))
	}
	client := redis.NewClient(opts)
	c.closers = append(c.closers, func() { _ = client.Close() })
	return client, nil
}

// dialCluster opens a Redis Cluster client on a URL in go-redis's cluster
// form (redis://host:port?addr=host:port&addr=…) and pings it.
func (c *cli) dialCluster(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	opts, err := redis.ParseClusterURL(rawURL)
	if err != nil {
		return nil, badURL(rawURL, err)
	}
	// go-redis ignores the path of a cluster URL; a cluster has only db 0.
	if u, _ := url.Parse(rawURL); u != nil && u.Path != "" && u.Path != "/" && u.Path != "/0" {
		return nil, usagef("--redis %s names database %s, but a Redis Cluster has only database 0",
			redactURL(rawURL), strings.TrimPrefix(u.Path, "/"))
	}
	if err := probeCluster(ctx, *opts); err != nil {
		return nil, fmt.Errorf("cannot reach Redis Cluster at %s: %s",
			strings.Join(opts.Addrs, ","), unreachable(err, opts.TLSConfig != nil))
	}
	client := redis.NewClusterClient(opts)
	c.closers = append(c.closers, func() { _ = client.Close() })
	return client, nil
}

// isClusterURL reports whether rawURL has addr= query parameters, the
// mark of go-redis's cluster URL form.
func isClusterURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	_, ok := u.Query()["addr"]
	return ok
}

func badURL(rawURL string, err error) error {
	return usagef("--redis %s is not a Redis URL: %s", redactURL(rawURL), strings.TrimPrefix(err.Error(), "redis: "))
}

// unreachable says why a probe failed, with a hint when a TLS URL met a
// server that does not answer TLS.
func unreachable(err error, tls bool) string {
	reason := netReason(err)
	if tls && strings.HasPrefix(reason, "no answer") {
		reason += " (rediss:// needs a server that speaks TLS)"
	}
	return reason
}

// probe pings Redis once, without go-redis's retries (the CLI's client
// keeps them), so an unreachable server is reported at once.
func probe(ctx context.Context, opts redis.Options) error {
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	client := redis.NewClient(&opts)
	defer client.Close()
	return ping(ctx, client)
}

// probeCluster is probe for a cluster: the ping loads the slot map from
// the nodes given, so it fails when none answers or when they are not a
// cluster.
func probeCluster(ctx context.Context, opts redis.ClusterOptions) error {
	opts.MaxRetries = -1
	opts.MaxRedirects = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	client := redis.NewClusterClient(&opts)
	defer client.Close()
	return ping(ctx, client)
}

func newManager(client redis.UniversalClient, prefix string, shards int) (*taskflow.Manager, error) {
	store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix), taskflow.WithShards(shards))
	if err != nil {
		return nil, &usageError{msg: cleanError(err)}
	}
	return taskflow.NewManager(store), nil
}

func ping(ctx context.Context, client redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return client.Ping(ctx).Err()
}

// netReason says in a few words why a connection failed.
func netReason(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	var nerr net.Error
	switch {
	case errors.As(err, &dns):
		return "unknown host " + dns.Name
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return fmt.Sprintf("no answer within %s", pingTimeout)
	}
	return strings.TrimPrefix(err.Error(), "redis: ")
}

// redactURL hides a password in a URL meant for display.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func (c *cli) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}
