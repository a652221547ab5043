package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

var keysVerb = &verb{
	name:    "keys",
	args:    "<id>",
	summary: "print a flow's Redis keys and the redis-cli commands to read them",
	help: `Print a flow's shard, its Redis keys and the redis-cli commands that read
them. Nothing is read from Redis: the keys follow from --prefix, --shards and
the id alone. The shard is the id's last 8 hex digits read as a number, modulo
the shard count; in bash:

  ID=1b4e28ba-2fa1-11d2-883f-0016d3cca427; echo $(( 0x${ID: -8} % 16 ))

Every key of the flow starts with <prefix>:{<shard>}; the README's key table
lists them all.`,
	run: cmdKeys,
}

// flowKey is one key of a flow and how to read it.
type flowKey struct {
	Key     string `json:"key"`
	Type    string `json:"type"`
	What    string `json:"what"`
	Command string `json:"command"`
}

// keysOut is the JSON output of keys.
type keysOut struct {
	ID     string    `json:"id"`
	Shard  int       `json:"shard"`
	Shards int       `json:"shards"`
	Keys   []flowKey `json:"keys"`
}

func cmdKeys(ctx context.Context, c *cli, args []string) error {
	c.flags()
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, "<id>"); err != nil {
		return err
	}
	id, err := parseID(pos[0])
	if err != nil {
		return err
	}
	if err := checkURL(c.redisURL); err != nil {
		return err
	}
	// The store only computes names here: its client never dials.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"})
	defer client.Close()
	store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(c.prefix), taskflow.WithShards(c.shards))
	if err != nil {
		return &usageError{msg: cleanError(err)}
	}
	shard := store.ShardOf(id)
	tag := c.prefix + ":{" + strconv.Itoa(shard) + "}"
	ids := id.String()
	cli := redisCLI(c.redisURL)
	q := clitext.ShellQuote
	out := keysOut{ID: ids, Shard: shard, Shards: c.shards, Keys: []flowKey{
		{tag + ":flow:" + ids, "hash", "the flow record and its state ($<key> fields)", cli + " HGETALL " + q(tag+":flow:"+ids)},
		{tag + ":events:" + ids, "list", "audit events, newest first", cli + " LRANGE " + q(tag+":events:"+ids) + " 0 19"},
		{tag + ":steps:" + ids, "zset", "step run ids by insertion order", cli + " ZRANGE " + q(tag+":steps:"+ids) + " 0 -1"},
		// "$RUN_ID", not a <run-id> placeholder that bash reads as a
		// redirection: the command pastes as it is.
		{tag + ":step:" + ids + ":<run-id>", "hash", "one step (set RUN_ID to a run id from the steps key)", cli + " HGETALL " + q(tag+":step:"+ids+":") + `"$RUN_ID"`},
		{tag + ":leases", "hash", "the flow's lease: field <id>, token|expiry ms|worker (and t:<token>, <id>, while it lives)", cli + " HGET " + q(tag+":leases") + " " + ids},
		{tag + ":timers", "zset", "a timer wait's deadline (unix ms): member <id>", cli + " ZSCORE " + q(tag+":timers") + " " + ids},
	}}
	if c.json {
		return writeJSON(c.stdout, out)
	}
	w := c.stdout
	tail := ids[len(ids)-8:]
	fmt.Fprintf(w, "flow %s: shard %d of %d (0x%s %% %d = %d)\n\n", ids, shard, c.shards, tail, c.shards, shard)
	for _, k := range out.Keys {
		fmt.Fprintf(w, "%s  (%s: %s)\n  %s\n", k.Key, k.Type, k.What, k.Command)
	}
	return nil
}

// redisCLI is the redis-cli invocation that reaches the server of a URL
// (the password left out: redis-cli takes it from REDISCLI_AUTH).
func redisCLI(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "redis-cli"
	}
	parts := []string{"redis-cli"}
	if u.Scheme == "unix" {
		return "redis-cli -s " + clitext.ShellQuote(u.Path)
	}
	if h := u.Hostname(); h != "" && h != "127.0.0.1" && h != "localhost" {
		parts = append(parts, "-h", clitext.ShellQuote(h))
	}
	if p := u.Port(); p != "" && p != "6379" {
		parts = append(parts, "-p", p)
	}
	if isClusterURL(rawURL) {
		parts = append(parts, "-c")
	} else if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		parts = append(parts, "-n", clitext.ShellQuote(db))
	}
	if u.Scheme == "rediss" {
		parts = append(parts, "--tls")
	}
	if u.User != nil && u.User.Username() != "" && u.User.Username() != "default" {
		parts = append(parts, "--user", clitext.ShellQuote(u.User.Username()))
	}
	return strings.Join(parts, " ")
}
