package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// Connection defaults.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/0"
	pingTimeout     = 3 * time.Second
)

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

// dial opens a client on rawURL and pings it: a failover client that
// follows the master a set of Sentinels names when the URL is a Sentinel
// URL (isSentinelURL), a cluster client when the URL names more nodes with
// addr= parameters, a plain client otherwise.
func (c *cli) dial(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	if err := checkURL(rawURL); err != nil {
		return nil, err
	}
	if isSentinelURL(rawURL) {
		return c.dialSentinel(ctx, rawURL)
	}
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
			clitext.RedactURL(rawURL), strings.TrimPrefix(u.Path, "/"))
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
// mark of go-redis's cluster URL form (and no master_name=, which makes it
// a Sentinel URL).
func isClusterURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || isSentinelURL(rawURL) {
		return false
	}
	_, ok := u.Query()["addr"]
	return ok
}

// sentinelScheme is the scheme of the CLI's Sentinel URL form:
// redis-sentinel://[user:pass@]host:port[,host:port…][/db]?master_name=NAME.
const sentinelScheme = "redis-sentinel"

// isSentinelURL reports whether rawURL reaches Redis through Sentinel:
// the redis-sentinel:// scheme, or go-redis's failover form (a redis://
// or rediss:// URL with master_name=, its host and addr= parameters the
// Sentinels).
func isSentinelURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	if u.Scheme == sentinelScheme {
		return true
	}
	_, ok := u.Query()["master_name"]
	return ok && (u.Scheme == "redis" || u.Scheme == "rediss")
}

// failoverURL turns the redis-sentinel:// form into go-redis's failover
// form: the first host stays the host, the others become addr= parameters.
// Other URLs come back unchanged.
func failoverURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != sentinelScheme {
		return rawURL, nil
	}
	hosts := strings.Split(u.Host, ",")
	q := u.Query()
	for i, h := range hosts {
		if h == "" {
			return "", fmt.Errorf("an empty Sentinel address in %q", u.Host)
		}
		if _, _, err := net.SplitHostPort(h); err != nil { // no port: Sentinel's
			hosts[i] = net.JoinHostPort(strings.Trim(h, "[]"), "26379")
		}
		if i > 0 {
			q.Add("addr", hosts[i])
		}
	}
	u.Scheme, u.Host, u.RawQuery = "redis", hosts[0], q.Encode()
	return u.String(), nil
}

// sentinelOptions parses a Sentinel URL, either form. The master name is
// required; a Sentinel address without a port gets Sentinel's 26379.
func sentinelOptions(rawURL string) (*redis.FailoverOptions, error) {
	fu, err := failoverURL(rawURL)
	if err != nil {
		return nil, badURL(rawURL, err)
	}
	opts, err := redis.ParseFailoverURL(fu)
	if err != nil {
		return nil, badURL(rawURL, err)
	}
	if opts.MasterName == "" {
		return nil, usagef("--redis %s names no master: add ?master_name=<the name the Sentinels monitor>", clitext.RedactURL(rawURL))
	}
	return opts, nil
}

// dialSentinel opens a failover client: it asks the Sentinels for the
// master of opts.MasterName and follows it across failovers, so fsck, run
// and the dashboard keep talking to the master.
func (c *cli) dialSentinel(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	opts, err := sentinelOptions(rawURL)
	if err != nil {
		return nil, err
	}
	if err := probeSentinel(ctx, *opts); err != nil {
		return nil, fmt.Errorf("cannot reach the master %q through Sentinel at %s: %s",
			opts.MasterName, strings.Join(opts.SentinelAddrs, ","), unreachable(err, opts.TLSConfig != nil))
	}
	client := redis.NewFailoverClient(opts)
	c.closers = append(c.closers, func() { _ = client.Close() })
	return client, nil
}

// checkURL catches the URL mistakes go-redis would misread or answer
// with a parser error: a missing scheme, and an empty host (which
// go-redis silently takes as localhost:6379).
func checkURL(rawURL string) error {
	if !strings.Contains(rawURL, "://") {
		shown := strings.TrimPrefix(clitext.RedactURL("redis://"+rawURL), "redis://")
		return usagef("--redis %s is not a Redis URL; did you mean redis://%s ?", shown, shown)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return usagef("--redis is not a Redis URL: %s", strings.TrimPrefix(err.Error(), "parse "))
	}
	switch u.Scheme {
	case "redis", "rediss":
	case sentinelScheme:
		if u.Host == "" {
			return usagef("--redis %s names no Sentinel; give one, e.g. redis-sentinel://127.0.0.1:26379?master_name=mymaster", clitext.RedactURL(rawURL))
		}
		return nil
	case "unix":
		return nil
	default:
		return usagef("--redis %s is not a Redis URL: the scheme must be redis://, rediss://, redis-sentinel:// or unix://", clitext.RedactURL(rawURL))
	}
	if u.Hostname() == "" {
		return usagef("--redis %s names no host (go-redis would quietly use localhost:6379); give one, e.g. %s://127.0.0.1:6379",
			clitext.RedactURL(rawURL), u.Scheme)
	}
	return nil
}

func badURL(rawURL string, err error) error {
	return usagef("--redis %s is not a Redis URL: %s", clitext.RedactURL(rawURL), strings.TrimPrefix(err.Error(), "redis: "))
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
	o := probeOptions(opts)
	client := redis.NewClient(&o)
	defer client.Close()
	return ping(ctx, client)
}

// probeOptions are the options of probe's client.
func probeOptions(opts redis.Options) redis.Options {
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	opts.DialTimeout = probeTimeout(opts.DialTimeout)
	opts.ReadTimeout = probeTimeout(opts.ReadTimeout)
	opts.WriteTimeout = probeTimeout(opts.WriteTimeout)
	opts.ContextTimeoutEnabled = true
	return opts
}

// probeTimeout bounds one timeout of a probe's client by pingTimeout,
// the bound its "no answer within" message states: go-redis's defaults
// (0: 5 s for the dial and each read) and a URL's longer or disabled
// (negative) timeouts become pingTimeout, shorter ones stay. The probe
// also sets ContextTimeoutEnabled so that the ping's deadline bounds the
// whole exchange, not each socket operation alone.
func probeTimeout(d time.Duration) time.Duration {
	if d <= 0 || d > pingTimeout {
		return pingTimeout
	}
	return d
}

// probeCluster is probe for a cluster: the ping loads the slot map from
// the nodes given, so it fails when none answers or when they are not a
// cluster.
func probeCluster(ctx context.Context, opts redis.ClusterOptions) error {
	o := probeClusterOptions(opts)
	client := redis.NewClusterClient(&o)
	defer client.Close()
	return ping(ctx, client)
}

// probeClusterOptions are the options of probeCluster's client.
func probeClusterOptions(opts redis.ClusterOptions) redis.ClusterOptions {
	opts.MaxRetries = -1
	opts.MaxRedirects = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	opts.DialTimeout = probeTimeout(opts.DialTimeout)
	opts.ReadTimeout = probeTimeout(opts.ReadTimeout)
	opts.WriteTimeout = probeTimeout(opts.WriteTimeout)
	opts.ContextTimeoutEnabled = true
	return opts
}

// probeSentinel is probe through Sentinel: the ping asks the Sentinels
// for the master, then pings it.
func probeSentinel(ctx context.Context, opts redis.FailoverOptions) error {
	o := probeFailoverOptions(opts)
	client := redis.NewFailoverClient(&o)
	// Closed in the background: go-redis's Close waits for a Sentinel
	// lookup still running in its dial goroutine (not bound by the ping's
	// context, only by the timeouts above), which would double the time
	// the "no answer within" message states.
	defer func() { go client.Close() }()
	return ping(ctx, client)
}

// probeFailoverOptions are the options of probeSentinel's client.
func probeFailoverOptions(opts redis.FailoverOptions) redis.FailoverOptions {
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	opts.DialTimeout = probeTimeout(opts.DialTimeout)
	opts.ReadTimeout = probeTimeout(opts.ReadTimeout)
	opts.WriteTimeout = probeTimeout(opts.WriteTimeout)
	opts.ContextTimeoutEnabled = true
	return opts
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

// layoutKey is the key every flow space has once a store used it: the
// library's <prefix>:{meta}:layout (keys.go), holding its shard count.
func layoutKey(prefix string) string { return prefix + ":{meta}:layout" }

// connectExisting is connect for the verbs that read or act on flows: a
// flow space that does not exist (no layout key) is refused, naming the
// server and the flow spaces that do exist there, rather than answered
// as if it were empty. It writes nothing (a store's first use would
// record the layout of a mistyped prefix).
func (c *cli) connectExisting(ctx context.Context) (*taskflow.Manager, error) {
	client, err := c.dial(ctx, c.redisURL)
	if err != nil {
		return nil, err
	}
	m, err := newManager(client, c.prefix, c.shards) // checks the prefix, no I/O
	if err != nil {
		return nil, err
	}
	n, err := client.Exists(ctx, layoutKey(c.prefix)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", layoutKey(c.prefix), err)
	}
	if n == 0 {
		return nil, c.noSpace(ctx, client)
	}
	return m, nil
}

// connectWarn is connect for the engine verbs: a flow space that does not
// exist yet is served (its workers may not have started), with a warning
// naming the flow spaces that do exist, since an engine on a mistyped
// prefix would otherwise idle in silence.
func (c *cli) connectWarn(ctx context.Context) (*taskflow.Manager, error) {
	return c.connectServing(ctx, "serving it anyway")
}

// connectServing connects to a flow space that may not exist yet; when
// it does not, it warns, naming the flow spaces that do, and ending the
// warning with what the verb does anyway (then).
func (c *cli) connectServing(ctx context.Context, then string) (*taskflow.Manager, error) {
	client, err := c.dial(ctx, c.redisURL)
	if err != nil {
		return nil, err
	}
	m, err := newManager(client, c.prefix, c.shards) // checks the prefix, no I/O
	if err != nil {
		return nil, err
	}
	if n, err := client.Exists(ctx, layoutKey(c.prefix)).Result(); err == nil && n == 0 {
		c.warnf("%s; %s", c.noSpace(ctx, client), then)
	}
	return m, nil
}

// noSpace says that the flow space c.prefix does not exist on the server
// and which ones do.
func (c *cli) noSpace(ctx context.Context, client redis.UniversalClient) error {
	msg := fmt.Sprintf("no flow space %q at %s (no key %s)", c.prefix, serverName(c.redisURL), layoutKey(c.prefix))
	spaces, complete, err := flowSpaces(ctx, client)
	switch {
	case err != nil:
		msg += fmt.Sprintf("; listing the flow spaces there failed: %s", netReason(err))
	case len(spaces) == 0:
		msg += "; the server holds no flow space at all"
	default:
		msg += "; flow spaces there: " + strings.Join(spaces, ", ")
		if !complete {
			msg += ", …"
		}
		if s := suggest(c.prefix, spaces); s != "" {
			msg += fmt.Sprintf("; did you mean --prefix %s?", s)
		} else {
			msg += " (pick one with --prefix or TASKFLOW_PREFIX)"
		}
	}
	return errors.New(msg)
}

// Limits of the flow space listing.
const (
	maxSpacesListed = 20
	maxScanCalls    = 1000 // SCAN calls per node, COUNT 1000 each
)

// flowSpaces finds the prefixes of the flow spaces on the server by a
// SCAN for *:{meta}:layout keys (on every master of a cluster). It walks
// the keyspace, which is acceptable for an operator verb met with a
// missing space, but stops after maxSpacesListed spaces or maxScanCalls
// calls per node; complete says whether it saw everything.
func flowSpaces(ctx context.Context, client redis.UniversalClient) (spaces []string, complete bool, err error) {
	const suffix = ":{meta}:layout"
	found := map[string]bool{}
	complete = true
	scan := func(ctx context.Context, node redis.Cmdable) error {
		var cursor uint64
		for calls := 0; ; calls++ {
			if calls == maxScanCalls {
				complete = false
				return nil
			}
			keys, next, err := node.Scan(ctx, cursor, "*"+suffix, 1000).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				found[strings.TrimSuffix(k, suffix)] = true
			}
			if len(found) >= maxSpacesListed {
				complete = next == 0
				return nil
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cc, ok := client.(*redis.ClusterClient); ok {
		// One master at a time: scan shares found and complete.
		var mu sync.Mutex
		var masters []*redis.Client
		err = cc.ForEachMaster(ctx, func(_ context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			masters = append(masters, node)
			return nil
		})
		for _, node := range masters {
			if err == nil {
				err = scan(ctx, node)
			}
		}
	} else {
		err = scan(ctx, client)
	}
	for p := range found {
		spaces = append(spaces, p)
	}
	sort.Strings(spaces)
	return spaces, complete, err
}

// serverName is the server a URL names, for messages: host:port, or the
// nodes of a cluster URL.
func serverName(rawURL string) string {
	if isSentinelURL(rawURL) {
		if opts, err := sentinelOptions(rawURL); err == nil {
			return fmt.Sprintf("master %s via Sentinel %s", opts.MasterName, strings.Join(opts.SentinelAddrs, ","))
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	addrs := []string{u.Host}
	addrs = append(addrs, u.Query()["addr"]...)
	if u.Scheme == "unix" {
		return u.Path
	}
	return strings.Join(addrs, ",")
}
