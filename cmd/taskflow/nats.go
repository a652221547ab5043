package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/taskflow-dev/taskflow"
	natsbridge "github.com/taskflow-dev/taskflow/extra/nats"
)

// natsFlags are run's NATS bridge flags.
type natsFlags struct {
	url, subject, stream, durable string
}

// registerNATSFlags adds run's NATS bridge flags to fs.
func registerNATSFlags(fs *flag.FlagSet) *natsFlags {
	f := &natsFlags{}
	fs.StringVar(&f.url, "nats", "", "NATS server `URL` whose resume messages to bridge (e.g. nats://127.0.0.1:4222)")
	fs.StringVar(&f.subject, "nats-subject", natsbridge.DefaultSubject, "the `subject` the original publishes resume messages on")
	fs.StringVar(&f.stream, "nats-stream", natsbridge.DefaultStream,
		"JetStream `stream` created for the subject when none captures it")
	fs.StringVar(&f.durable, "nats-durable", natsbridge.DefaultDurable,
		"durable consumer `name` the bridges share (the queue group on core NATS)")
	return f
}

// startNATS connects to the NATS server of f and runs a bridge from the
// original's resume subject to m's resume stream until ctx ends (see
// package natsbridge: JetStream when the server has it, acknowledged once
// Redis has the message; core NATS, at most once, otherwise). It returns
// once the connection is up; wg waits for the bridge's end.
func startNATS(ctx context.Context, c *cli, m *taskflow.Manager, f *natsFlags, wg *sync.WaitGroup) error {
	log := c.logger(slog.LevelInfo)
	url := f.url
	nc, err := nats.Connect(url, nats.Name("taskflow run"), nats.Timeout(pingTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s: %w", url, err)
	}
	b, err := natsbridge.New(nc, m, natsbridge.WithLogger(log), natsbridge.WithSubject(f.subject),
		natsbridge.WithStream(f.stream), natsbridge.WithDurable(f.durable))
	if err != nil {
		nc.Close()
		return usagef("%s", cleanError(err))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer nc.Close()
		if err := b.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("taskflow: the NATS bridge stopped", "err", err)
		}
	}()
	return nil
}
