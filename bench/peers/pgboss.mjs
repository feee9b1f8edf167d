// pg-boss driver for the peer benchmarks. See README.md for the protocol and the options chosen.
import PgBoss from 'pg-boss'
import { createRequire } from 'node:module'
import { main, packageVersion, log } from './common.mjs'

const require = createRequire(import.meta.url)
const plans = require('pg-boss/src/plans')

const QUEUE = 'bench'
const SCHEMA = 'pgboss'
const INSERT_BATCH = 1000
// pg-boss 10 rejects pollingIntervalSeconds below 0.5 (attorney.js MIN_POLLING_INTERVAL_MS = 500).
const POLLING_INTERVAL_SECONDS = 0.5

async function makeAdapter (args) {
  const consumers = args.consumers
  const batchSize = Number(args['batch-size'])
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error('--batch-size must be a positive integer')
  const poolMax = consumers + 4
  const boss = new PgBoss({
    connectionString: args.conn,
    schema: SCHEMA,
    application_name: 'bench-pgboss',
    max: poolMax,
    schedule: false // no cron jobs are used; skips the cron monitor and its worker
  })
  boss.on('error', (err) => log(`pg-boss error: ${err.message}`))

  // Count durable completions: pg-boss's worker calls complete() without awaiting it, so the handler returning is
  // not the job being completed. Wrap its own Db (documented public getDb()) and add up the rows each
  // completeJobs statement reports as completed.
  const completeSql = plans.completeJobs(SCHEMA)
  const db = boss.getDb()
  const execute = db.executeSql.bind(db)
  let completed = 0
  let waiter = null
  db.executeSql = async (text, values) => {
    const result = await execute(text, values)
    if (text === completeSql && result) {
      completed += Number(result.rows[0].count)
      if (waiter && completed >= waiter.target) { waiter.resolve(); waiter = null }
    }
    return result
  }

  const options = {
    pollingIntervalSeconds: POLLING_INTERVAL_SECONDS,
    workers: consumers,
    batchSize,
    pool_max: poolMax,
    schedule: false,
    supervise: true,
    queue_policy: 'standard'
  }

  return {
    system: 'pg-boss',
    version: packageVersion('pg-boss'),
    options,
    notes: `pg-boss 10 has no LISTEN/NOTIFY (useListenNotify does not exist in v10), so workers poll: ` +
      `${consumers} work() workers, each fetching up to batchSize=${batchSize} jobs per poll, ` +
      `pollingIntervalSeconds=${POLLING_INTERVAL_SECONDS} (the minimum v10 accepts; a worker waits the interval ` +
      `after every fetch, even a non-empty one). teamSize/teamConcurrency no longer exist in v10: concurrency is ` +
      `one work() call per consumer. Pool max=${poolMax}; schedule=false (no cron); maintenance (supervise) on ` +
      'by default. Completion counted from the rows its completeJobs statement updated.',

    async setup () {
      await boss.start()
      await boss.createQueue(QUEUE) // v10 requires the queue to exist; policy 'standard'
    },

    async preInsert (ids) {
      for (let i = 0; i < ids.length; i += INSERT_BATCH) {
        await boss.insert(ids.slice(i, i + INSERT_BATCH).map((id) => ({ name: QUEUE, data: { id } })))
      }
    },

    async startConsumers (onStart) {
      for (let i = 0; i < consumers; i++) {
        await boss.work(QUEUE, { batchSize, pollingIntervalSeconds: POLLING_INTERVAL_SECONDS }, async (jobs) => {
          for (const job of jobs) onStart(job.data.id)
        })
      }
    },

    async insert (id) {
      const jobId = await boss.send(QUEUE, { id })
      if (!jobId) throw new Error(`send returned no id for job ${id}`)
    },

    awaitCompleted (count) {
      if (completed >= count) return Promise.resolve()
      return new Promise((resolve) => { waiter = { target: count, resolve } })
    },

    async close () {
      await boss.stop({ graceful: true, wait: true, timeout: 5000 })
    }
  }
}

await main(makeAdapter, { 'batch-size': { type: 'string', default: '200' } })
