// The BullMQ half of taskflow's jobs benchmark (internal/bench/jobs*.go).
// The Go side writes this file into a temp dir next to an npm install of
// bullmq and runs it with `node jobs_bullmq.js HOST PORT`. It reads one
// JSON command per line on stdin and answers each with one JSON line on
// stdout ({"ok":true,...} or {"ok":false,"error":"..."}); the Go side
// reads INFO between commands, so setup and teardown stay outside the
// measured windows.
'use strict';

const readline = require('readline');
const { Queue, Worker } = require('bullmq');

const host = process.argv[2] || '127.0.0.1';
const port = Number(process.argv[3] || 6379);
// maxRetriesPerRequest: null is what BullMQ asks of a worker's connection.
const connection = { host, port, maxRetriesPerRequest: null };

let queue = null;
let workers = [];
let runState = null; // the pass being drained: expected items and counts

function secsSince(start) {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const handlers = {
  // hello: the versions in use.
  async hello() {
    return {
      bullmq: require('bullmq/package.json').version,
      ioredis: require('ioredis/package.json').version,
      node: process.version,
    };
  },

  // open: a Queue for this pass, connected.
  async open(msg) {
    queue = new Queue(msg.queue, { connection });
    await queue.waitUntilReady();
    return {};
  },

  // add: msg.items jobs from msg.producers concurrent loops on the one
  // Queue, each job {message: i}, default options (history kept).
  async add(msg) {
    let next = 0;
    const producer = async () => {
      for (;;) {
        const i = next++;
        if (i >= msg.items) return;
        await queue.add('job', { message: i });
      }
    };
    const start = process.hrtime.bigint();
    await Promise.all(Array.from({ length: msg.producers }, producer));
    return { secs: secsSince(start) };
  },

  // workers: msg.workers Workers with concurrency msg.concurrency and a
  // processor that does nothing, connected but not yet running.
  async workers(msg) {
    runState = { items: msg.items, completed: 0, ids: new Set(), failed: 0, done: null, start: null };
    workers = [];
    for (let w = 0; w < msg.workers; w++) {
      const worker = new Worker(queue.name, async () => {}, {
        connection,
        concurrency: msg.concurrency,
        autorun: false,
      });
      worker.on('completed', (job) => {
        const s = runState;
        s.completed++;
        s.ids.add(job.id);
        if (s.completed >= s.items && s.done) {
          const d = s.done;
          s.done = null;
          d(secsSince(s.start));
        }
      });
      worker.on('failed', () => { runState.failed++; });
      worker.on('error', (err) => { process.stderr.write(`worker error: ${err && err.message}\n`); });
      await worker.waitUntilReady();
      workers.push(worker);
    }
    return {};
  },

  // run: start the workers; answer once every job has completed.
  async run() {
    const s = runState;
    const finished = new Promise((resolve) => { s.done = resolve; });
    s.start = process.hrtime.bigint();
    for (const w of workers) {
      w.run().catch((err) => process.stderr.write(`worker run: ${err && err.message}\n`));
    }
    const secs = await finished;
    return { secs, completed: s.completed, distinct: s.ids.size, failed: s.failed };
  },

  // close: close the workers and the queue; report the queue's counts.
  async close() {
    await Promise.all(workers.map((w) => w.close()));
    workers = [];
    let counts = {};
    if (queue) {
      counts = await queue.getJobCounts('completed', 'wait', 'active', 'failed', 'delayed');
      await queue.close();
      queue = null;
    }
    return { counts };
  },
};

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let reply;
    try {
      const msg = JSON.parse(line);
      const h = handlers[msg.cmd];
      if (!h) throw new Error(`unknown command ${msg.cmd}`);
      reply = Object.assign({ ok: true }, await h(msg));
    } catch (err) {
      reply = { ok: false, error: String((err && err.stack) || err) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  });
});
rl.on('close', () => {
  chain.then(async () => {
    await Promise.all(workers.map((w) => w.close().catch(() => {})));
    if (queue) await queue.close().catch(() => {});
    process.exit(0);
  });
});
