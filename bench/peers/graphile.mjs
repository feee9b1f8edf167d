// graphile-worker driver for the peer benchmarks. See README.md for the protocol and the options chosen.
import { run, runMigrations, Logger } from 'graphile-worker'
import { createRequire } from 'node:module'
import { main, packageVersion, log } from './common.mjs'

// Use the very pg module graphile-worker itself loads, so the pool we hand it is the kind it expects.
const require = createRequire(import.meta.url)
const { Pool } = createRequire(require.resolve('graphile-worker'))('pg')

const TASK = 'noop'
const SCHEMA = 'graphile_worker'
const INSERT_BATCH = 10000

// Library logs go to stderr (warnings and errors only) so stdout stays the result protocol.
const logger = new Logger((scope) => (level, message) => {
  if (level === 'error' || level === 'warning') log(`graphile-worker ${level}: ${message}`)
})

function intOption (args, name) {
  const n = Number(args[name])
  if (!Number.isInteger(n)) throw new Error(`--${name} must be an integer, got ${args[name]}`)
  return n
}

async function makeAdapter (args) {
  const consumers = args.consumers
  // Default: graphile-worker's own perfTest configuration (perfTest/graphile.config.js): a local queue of 500
  // locked jobs with a 10 ms refetch delay, and completions batched per tick (completeJobBatchDelay 0).
  const localQueueSize = intOption(args, 'local-queue-size')
  const refetchDelayMs = intOption(args, 'refetch-delay-ms')
  const completeJobBatchDelay = intOption(args, 'complete-batch-delay-ms')
  const poolMax = consumers + 4
  const worker = {
    concurrentJobs: consumers,
    maxPoolSize: poolMax,
    completeJobBatchDelay,
    failJobBatchDelay: completeJobBatchDelay,
    ...(localQueueSize > 0
      ? { localQueue: { size: localQueueSize, ...(refetchDelayMs > 0 ? { refetchDelay: { durationMs: refetchDelayMs } } : {}) } }
      : {})
  }

  // Our own pool (graphile-worker's documented pgPool option) so completions can be counted: every completion is a
  // "delete from graphile_worker._private_jobs ..." statement, whose row count is the number of jobs completed.
  const pool = new Pool({ connectionString: args.conn, max: poolMax, application_name: 'bench-graphile-worker' })
  pool.on('error', (err) => log(`pg pool error: ${err.message}`))
  const completePrefix = `delete from "${SCHEMA}"._private_jobs`
  let completed = 0
  let waiter = null
  const countCompletion = (result) => {
    completed += result.rowCount ?? 0
    if (waiter && completed >= waiter.target) { waiter.resolve(); waiter = null }
  }
  pool.on('connect', (client) => {
    const query = client.query.bind(client)
    client.query = (config, ...rest) => {
      const text = typeof config === 'string' ? config : config?.text
      const isComplete = typeof text === 'string' && text.startsWith(completePrefix)
      const out = query(config, ...rest)
      if (isComplete && out && typeof out.then === 'function') {
        return out.then((result) => { countCompletion(result); return result })
      }
      return out
    }
  })

  let runner = null
  const common = { pgPool: pool, logger, schema: SCHEMA }

  return {
    system: 'graphile-worker',
    version: packageVersion('graphile-worker'),
    options: {
      concurrency: consumers,
      maxPoolSize: poolMax,
      localQueue: worker.localQueue ?? null,
      completeJobBatchDelay,
      failJobBatchDelay: completeJobBatchDelay,
      pollInterval: 'default (2000 ms, only a fallback: new jobs arrive by LISTEN/NOTIFY)',
      preparedStatements: true,
      noHandleSignals: true
    },
    notes: `graphile-worker run() with concurrency=${consumers}, LISTEN/NOTIFY for new jobs, default pollInterval, ` +
      `prepared statements on (default), ` +
      (worker.localQueue
        ? `localQueue size=${localQueueSize}${refetchDelayMs > 0 ? ` refetchDelay ${refetchDelayMs} ms` : ''}, `
        : 'no localQueue (each worker fetches its own job), ') +
      `completeJobBatchDelay=${completeJobBatchDelay}` +
      (completeJobBatchDelay >= 0 ? ' (completions batched)' : ' (one delete per job)') +
      `; pool max=${poolMax}; no crontab. Schema installed with runMigrations before measuring; jobs added via ` +
      'graphile_worker.add_job (drain pre-insert: add_job over generate_series, as perfTest/init.js). ' +
      'Completion counted from the rows its completion deletes removed.',

    async setup () {
      await runMigrations(common)
    },

    async preInsert (ids) {
      const client = await pool.connect()
      try {
        for (let i = 0; i < ids.length; i += INSERT_BATCH) {
          const last = Math.min(ids.length, i + INSERT_BATCH) - 1
          await client.query(
            `select ${SCHEMA}.add_job($1::text, json_build_object('id', n)) from generate_series($2::int, $3::int) n`,
            [TASK, ids[i], ids[last]])
        }
      } finally {
        client.release()
      }
    },

    async startConsumers (onStart) {
      runner = await run({
        ...common,
        concurrency: consumers,
        noHandleSignals: true,
        taskList: { [TASK]: async (payload) => { onStart(payload.id) } },
        preset: { worker }
      })
      runner.promise.catch((err) => log(`runner failed: ${err.stack || err}`))
    },

    async insert (id) {
      await runner.addJob(TASK, { id })
    },

    awaitCompleted (count) {
      if (completed >= count) return Promise.resolve()
      return new Promise((resolve) => { waiter = { target: count, resolve } })
    },

    async close () {
      if (runner) await runner.stop()
      await pool.end()
    }
  }
}

await main(makeAdapter, {
  'local-queue-size': { type: 'string', default: '500' },
  'refetch-delay-ms': { type: 'string', default: '10' },
  'complete-batch-delay-ms': { type: 'string', default: '0' }
})
