package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// verb is one subcommand: its usage text and what it does. The text is
// written once, here, and printed by 'taskflow help <verb>'.
type verb struct {
	name    string
	args    string // the synopsis after "taskflow <name>", e.g. "<id> [--limit N]"
	summary string // one line for the verb list
	help    string // paragraphs (blank-line separated), wrapped when printed
	run     func(ctx context.Context, c *cli, args []string) error
	// nested, when set, lists the verb's actions ('taskflow schedule
	// create'): each names itself "<verb> <action>".
	nested func() []*verb
}

// version is the CLI's version; release builds set it with
// -ldflags "-X main.version=v1.2.3". Otherwise the module version or VCS
// revision recorded by the Go toolchain is shown.
var version = ""

func versionString() string {
	v, rev, dirty := version, "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev
		if dirty {
			v += ", modified"
		}
		v += ")"
	}
	return "taskflow " + v
}

// run is the whole program: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	// go-redis logs dial failures on its own; the CLI reports them once.
	redis.SetLogger(quietLogger{})
	c := &cli{stdout: stdout, stderr: stderr, json: wantsJSON(args)}
	defer c.close()
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printUsage(stdout)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help":
		return c.help(args[1:])
	}
	v := findVerb(name)
	if v == nil {
		return c.exitCode(unknownVerb(name))
	}
	c.v = v
	return c.exitCode(v.run(context.Background(), c, args[1:]))
}

// help is 'taskflow help [<verb>]'.
func (c *cli) help(args []string) int {
	if len(args) == 0 {
		printUsage(c.stdout)
		return 0
	}
	v := findVerb(args[0])
	if v == nil {
		return c.exitCode(unknownVerb(args[0]))
	}
	if len(args) > 1 && (v.nested == nil || len(args) > 2) {
		return c.exitCode(usagef("help takes one verb (or a verb and its action), got %d words", len(args)))
	}
	c.v = v
	return c.exitCode(v.run(context.Background(), c, append(args[1:], "--help")))
}

func findVerb(name string) *verb {
	for _, v := range verbs() {
		if v.name == name {
			return v
		}
	}
	return nil
}

func unknownVerb(name string) error {
	var names []string
	for _, v := range verbs() {
		names = append(names, v.name)
	}
	msg := fmt.Sprintf("unknown verb %q", name)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return usagef("%s (see 'taskflow help')", msg)
}

// wantsJSON reports whether --json is among the arguments, so that even
// an error met before the flags are parsed is printed as JSON.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
			return true
		}
	}
	return false
}

// lineWidth is where help text wraps.
const lineWidth = 80

// Bounds the library states in its doc comments, checked here first so
// that a flag out of range is a usage error, not a failed call.
const (
	maxAuditText = 1024                   // taskflow.WithAudit: actor and reason, in bytes
	maxListLimit = 1000                   // taskflow.WithLimit: flows per page
	maxShards    = 4096                   // taskflow.WithShards
	minLease     = 100 * time.Millisecond // taskflow.Manager.Claim and Extend: the shortest lease
)

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: taskflow <verb> [flags] [args]")
	fmt.Fprintln(w, "       taskflow help <verb>     a verb's usage and flags")
	fmt.Fprintln(w, "       taskflow --version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "verbs:")
	tw := clitext.NewTable(w)
	for _, v := range verbs() {
		fmt.Fprintf(tw, "  %s\t%s\n", v.name, v.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "common flags (every verb):")
	c := &cli{}
	printFlags(w, c.commonFlags(flag.NewFlagSet("", flag.ContinueOnError)), nil)
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

// cliError is the JSON form of an error, printed on stderr with --json.
type cliError struct {
	Error      string `json:"error"`
	ExitStatus int    `json:"exit_status"`
	Usage      bool   `json:"usage,omitempty"`
}

// exitCode prints err (if any) as one line, or as one JSON object with
// --json, and maps it to a status.
func (c *cli) exitCode(err error) int {
	var ue *usageError
	code, msg := 1, ""
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errReported):
		return 1
	case errors.As(err, &ue):
		code, msg = 2, oneLine(ue.msg)
	default:
		msg = oneLine(cleanError(err))
	}
	if c.json {
		_ = writeJSONLine(c.stderr, cliError{Error: msg, ExitStatus: code, Usage: code == 2})
	} else {
		fmt.Fprintf(c.stderr, "%s %s\n", paint(c.stderr, red, "taskflow:"), msg)
	}
	return code
}

// warnf prints a warning line on stderr (a JSON object with --json).
func (c *cli) warnf(format string, args ...any) {
	msg := oneLine(fmt.Sprintf(format, args...))
	if c.json {
		_ = writeJSONLine(c.stderr, map[string]string{"warning": msg})
		return
	}
	fmt.Fprintf(c.stderr, "%s %s\n", paint(c.stderr, yellow, "taskflow: warning:"), msg)
}

// cleanError drops the library's "taskflow: " and "invalid data: "
// prefixes, which say nothing to a person at a terminal.
func cleanError(err error) string {
	msg := err.Error()
	// The library names its Go option; an operator sets the flag.
	msg = withShardsRe.ReplaceAllString(msg, "(use --shards $1 or TASKFLOW_SHARDS=$1)")
	for _, p := range []string{"taskflow: ", "invalid data: "} {
		msg = strings.ReplaceAll(msg, ": "+p, ": ")
		for strings.HasPrefix(msg, p) {
			msg = strings.TrimPrefix(msg, p)
		}
	}
	return msg
}

// withShardsRe finds the library's advice for a shard count mismatch.
var withShardsRe = regexp.MustCompile(`\(use WithShards\((\d+)\)\)`)

// quietLogger silences go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cli holds one invocation's verb, output streams, common flags and
// connection.
type cli struct {
	stdout, stderr io.Writer
	v              *verb

	json     bool
	redisURL string
	prefix   string
	shards   int

	fs      *flag.FlagSet
	common  map[string]bool
	envErr  error
	closers []func()
}

// flags returns the verb's FlagSet with the common flags registered.
func (c *cli) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.v.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c.fs = fs
	c.commonFlags(fs)
	return fs
}

// commonFlags registers the flags every verb takes and returns their names.
func (c *cli) commonFlags(fs *flag.FlagSet) map[string]bool {
	fs.BoolVar(&c.json, "json", c.json, "machine-readable JSON output (errors too, on stderr)")
	fs.StringVar(&c.redisURL, "redis", envOr("TASKFLOW_REDIS_URL", defaultRedisURL),
		"Redis `URL`: redis://[user:pass@]host:port/db, rediss:// for TLS, or a Redis Cluster as one "+
			"node plus addr= parameters, e.g. redis://10.0.0.1:7101?addr=10.0.0.2:7101, or through Sentinel as "+
			"redis-sentinel://host:26379[,host:26379]/db?master_name=NAME (env TASKFLOW_REDIS_URL)")
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
		"shard `count` of the flow space; must match the workers' (env TASKFLOW_SHARDS)")
	c.common = map[string]bool{"json": true, "redis": true, "prefix": true, "shards": true}
	return c.common
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
			return nil, c.flagError(err)
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
	if c.shards < 1 || c.shards > maxShards {
		return nil, usagef("--shards %d is outside 1..%d", c.shards, maxShards)
	}
	return pos, nil
}

// flagError rewrites the flag package's messages in the --flag spelling
// the help uses, with a suggestion for a mistyped flag.
func (c *cli) flagError(err error) error {
	msg := err.Error()
	see := fmt.Sprintf("(see 'taskflow help %s')", c.v.name)
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		var names []string
		c.fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		msg = fmt.Sprintf("%s: unknown flag --%s", c.v.name, name)
		if s := suggest(name, names); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
		return usagef("%s %s", msg, see)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return usagef("%s: flag --%s needs a value %s", c.v.name, strings.TrimLeft(name, "-"), see)
	}
	// invalid value "x" for flag -limit: parse error
	if i := strings.Index(msg, " for flag -"); i >= 0 {
		rest := msg[i+len(" for flag -"):]
		name, why, _ := strings.Cut(rest, ": ")
		if why == "parse error" || strings.HasPrefix(why, "strconv.") {
			why = "not a number"
		}
		return usagef("%s: --%s: %s: %s %s", c.v.name, name, msg[:i], why, see)
	}
	return usagef("%s: %s %s", c.v.name, msg, see)
}

// printHelp prints the verb's usage: synopsis, description, its own
// flags, then the common ones.
func (c *cli) printHelp() {
	w := c.stdout
	fmt.Fprintf(w, "usage: taskflow %s %s\n\n", c.v.name, c.v.args)
	fmt.Fprint(w, wrapText(c.v.help, lineWidth, ""))
	fmt.Fprintln(w)
	own := map[string]bool{}
	c.fs.VisitAll(func(f *flag.Flag) {
		if !c.common[f.Name] {
			own[f.Name] = true
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "flags:")
		printFlags(w, own, c.fs)
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "common flags:")
	printFlags(w, c.common, c.fs)
}

// printFlags prints the flags named in names, as --name VALUE and a
// wrapped description with the default. fs nil: a scratch set of the
// common flags.
func printFlags(w io.Writer, names map[string]bool, fs *flag.FlagSet) {
	if fs == nil {
		fs = flag.NewFlagSet("", flag.ContinueOnError)
		(&cli{}).commonFlags(fs)
	}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if names[f.Name] {
			flags = append(flags, f)
		}
	})
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		arg, usage := flag.UnquoteUsage(f)
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			arg = ""
		}
		head := "  --" + f.Name
		if arg != "" {
			head += " " + strings.ToUpper(arg)
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && d != "[]" {
			usage += " (default " + d + ")"
		}
		fmt.Fprintln(w, head)
		fmt.Fprint(w, wrapText(usage, lineWidth, "      "))
	}
}

// wantArgs checks the number of arguments.
func (c *cli) wantArgs(pos []string, names ...string) error {
	if len(pos) < len(names) {
		return usagef("%s: missing %s (usage: taskflow %s %s)", c.v.name, names[len(pos)], c.v.name, c.v.args)
	}
	if len(pos) > len(names) {
		return usagef("%s: unexpected argument %q (usage: taskflow %s %s)", c.v.name, pos[len(names)], c.v.name, c.v.args)
	}
	return nil
}

// isSet reports whether the flag name was given on the command line.
func (c *cli) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseID reads a flow id argument.
func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, usagef("%q is not a flow id (want a UUID)", s)
	}
	if id == uuid.Nil {
		return uuid.Nil, usagef("%s is the nil UUID, which is no flow's id", s)
	}
	return id, nil
}

// suggest returns the name closest to s when it is close enough to be a
// typo (an edit distance of at most 2, or a prefix of it), else "".
func suggest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := editDistance(strings.ToLower(s), n)
		if d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return best
	}
	for _, n := range names {
		if len(s) >= 2 && strings.HasPrefix(n, s) {
			return n
		}
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (c *cli) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}
