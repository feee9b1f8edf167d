// Shared harness for the peer benchmark drivers (pg-boss, graphile-worker).
//
// Protocol with the orchestrator (bench/, C#):
//   stdout line 1: {"event":"measuring"}   printed once setup (schema, queue, warm-up, drain pre-insert) is done;
//   stdout line 2: the result object          printed when the scenario has finished; then exit code 0.
// Everything else (library logs, diagnostics) goes to stderr, so stdout stays machine-readable.
//
// A driver supplies an adapter; this file runs the three scenarios identically for every peer:
//   adapter.system, adapter.version, adapter.notes (string), adapter.options (object, echoed in the result)
//   adapter.setup()                  install the schema / queue; no job processing yet
//   adapter.preInsert(ids)           bulk insert jobs carrying these ids (drain only, before "measuring")
//   adapter.startConsumers(onStart)  start --consumers concurrent consumers; onStart(id) is called the moment
//                                    a handler is invoked for the job carrying id; handlers do nothing else
//   adapter.insert(id)               insert one job carrying id (one statement / round trip)
//   adapter.awaitCompleted(count)    resolve once `count` jobs (all that were started) are durably completed
//   adapter.close()                  release everything (after the result is printed)
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { readFileSync } from 'node:fs'

const SCENARIOS = ['drain', 'latency', 'steady']
const DEFAULT_JOBS = { drain: 100000, latency: 1000, steady: null }
const WARMUP_JOBS = 50
const STEADY_TICK_MS = 10
const STEADY_DRAIN_CAP_MS = 30000

export function parseCli (argv, extraOptions = {}) {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        conn: { type: 'string' },
        scenario: { type: 'string' },
        jobs: { type: 'string' },
        consumers: { type: 'string', default: '16' },
        rate: { type: 'string' },
        duration: { type: 'string', default: '60' },
        ...extraOptions
      }
    }))
  } catch (err) {
    usage(err.message)
  }
  if (!values.conn) usage('--conn <postgres URL> is required')
  if (!SCENARIOS.includes(values.scenario)) usage(`--scenario must be one of ${SCENARIOS.join('|')}`)
  const consumers = positiveInt(values.consumers, '--consumers')
  const duration = positiveNumber(values.duration, '--duration')
  let jobs = values.jobs === undefined ? DEFAULT_JOBS[values.scenario] : positiveInt(values.jobs, '--jobs')
  let rate = null
  if (values.scenario === 'steady') {
    if (values.rate === undefined) usage('--rate R is required for --scenario steady')
    rate = positiveNumber(values.rate, '--rate')
    if (values.jobs !== undefined) usage('--jobs does not apply to steady (it offers --rate for --duration)')
    jobs = Math.round(rate * duration)
  } else if (values.rate !== undefined) {
    usage('--rate applies only to --scenario steady')
  }
  return { ...values, scenario: values.scenario, conn: values.conn, consumers, duration, jobs, rate }
}

function usage (message) {
  process.stderr.write(`${message}\nusage: node <tool>.mjs --conn <postgres URL> --scenario drain|latency|steady ` +
    '[--jobs N] [--consumers 16] [--rate R] [--duration SECONDS] [tool options, see bench/peers/README.md]\n')
  process.exit(2)
}

function positiveInt (text, name) {
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) usage(`${name} must be a positive integer, got ${text}`)
  return n
}

function positiveNumber (text, name) {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) usage(`${name} must be a positive number, got ${text}`)
  return n
}

export function packageVersion (name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(url, 'utf8')).version
}

// Nearest-rank percentile over an ascending array.
export function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

export function latencySummary (values) {
  if (values.length === 0) return null
  const sorted = Float64Array.from(values).sort()
  const round = (x) => Math.round(x * 1000) / 1000
  return {
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1])
  }
}

export function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

export function log (message) {
  process.stderr.write(`[${new Date().toISOString()}] ${message}\n`)
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function deferred () {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}

const withTimeout = (promise, ms) => Promise.race([promise, sleep(ms).then(() => 'timeout')])

// Tracks handler starts per job id (ids >= 0 are measured jobs, negative ids are warm-up jobs).
class StartTracker {
  constructor () {
    this.starts = new Map() // id -> performance.now() at handler start
    this.waiters = new Map() // id -> deferred
    this.total = 0 // handler invocations including warm-up
    this.measured = 0
    this.lastStart = 0
    this.countWaiter = null // { target, deferred }
    this.onStart = (id) => this.#record(id)
  }

  #record (id) {
    const now = performance.now()
    if (this.starts.has(id)) {
      log(`job ${id} started twice (redelivery); keeping the first start`)
      return
    }
    this.starts.set(id, now)
    this.total++
    if (id >= 0) {
      this.measured++
      this.lastStart = now
      if (this.countWaiter && this.measured >= this.countWaiter.target) this.countWaiter.deferred.resolve()
    }
    const waiter = this.waiters.get(id)
    if (waiter) { this.waiters.delete(id); waiter.resolve() }
  }

  started (id) {
    if (this.starts.has(id)) return Promise.resolve()
    const d = deferred()
    this.waiters.set(id, d)
    return d.promise
  }

  measuredReached (target) {
    if (this.measured >= target) return Promise.resolve()
    this.countWaiter = { target, deferred: deferred() }
    return this.countWaiter.deferred.promise
  }
}

async function warmUp (adapter, tracker) {
  // Sequential single jobs through the same insert and consume path, so connection pools, prepared statements,
  // LISTEN connections and the JIT are warm before measuring (graphile-worker's perfTest warms up likewise).
  for (let i = 1; i <= WARMUP_JOBS; i++) {
    await adapter.insert(-i)
    await tracker.started(-i)
  }
  await adapter.awaitCompleted(tracker.total)
  log(`warm-up of ${WARMUP_JOBS} jobs done`)
  await sleep(1000) // let things settle, as perfTest/latencyTest.js does
}

export async function runScenario (adapter, args) {
  const tracker = new StartTracker()
  const base = {
    system: adapter.system,
    version: adapter.version,
    scenario: args.scenario,
    jobs: args.jobs,
    consumers: args.consumers
  }
  let result
  await adapter.setup()
  log(`${adapter.system} ${adapter.version}: setup done`)

  if (args.scenario === 'drain') {
    const ids = Array.from({ length: args.jobs }, (_, i) => i)
    log(`pre-inserting ${args.jobs} jobs`)
    await adapter.preInsert(ids)
    emit({ event: 'measuring' })
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    await adapter.startConsumers(tracker.onStart)
    await tracker.measuredReached(args.jobs)
    await adapter.awaitCompleted(tracker.total)
    result = closedRun(base, args.jobs, t0, null)
    const cpu = process.cpuUsage(cpu0)
    // This process's CPU time (user and system) while it drained: the consumers' side of the cost.
    result.cpu_seconds = round3((cpu.user + cpu.system) / 1e6)
  } else if (args.scenario === 'latency') {
    await adapter.startConsumers(tracker.onStart)
    await warmUp(adapter, tracker)
    emit({ event: 'measuring' })
    const latencies = new Array(args.jobs)
    const t0 = performance.now()
    for (let id = 0; id < args.jobs; id++) {
      const before = performance.now()
      await adapter.insert(id)
      await tracker.started(id)
      latencies[id] = tracker.starts.get(id) - before
    }
    await adapter.awaitCompleted(tracker.total)
    result = closedRun(base, args.jobs, t0, latencySummary(latencies))
  } else {
    result = await steady(adapter, args, tracker, base)
  }

  result.options = adapter.options
  result.notes = adapter.notes
  emit(result)
  await adapter.close()
  log('closed')
}

// The result of a run with no offered rate (drain, latency): jobs over the time since t0.
function closedRun (base, jobs, t0, latency) {
  const seconds = (performance.now() - t0) / 1000
  return {
    ...base,
    seconds: round3(seconds),
    jobs_per_sec: round1(jobs / seconds),
    latency_ms: latency,
    offered_rate: null,
    achieved_rate: round1(jobs / seconds)
  }
}

async function steady (adapter, args, tracker, base) {
  await adapter.startConsumers(tracker.onStart)
  await warmUp(adapter, tracker)
  emit({ event: 'measuring' })
  const total = args.jobs
  const insertStarts = new Float64Array(total)
  let issued = 0
  let insertErrors = 0
  let inFlight = 0
  let maxInFlight = 0
  const t0 = performance.now()
  const allIssued = deferred()
  // Fixed schedule: every tick, issue the jobs that are due by now (id k is due at t0 + k / rate), each as its own
  // insert; inserts are not awaited so a slow insert does not lower the offered rate.
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * args.rate) + 1)
    while (issued < due) {
      const id = issued++
      insertStarts[id] = performance.now()
      inFlight++
      if (inFlight > maxInFlight) maxInFlight = inFlight
      adapter.insert(id).then(
        () => { inFlight-- },
        (err) => { inFlight--; insertErrors++; log(`insert ${id} failed: ${err.message}`) })
    }
    if (issued >= total) { clearInterval(timer); allIssued.resolve() }
  }
  const timer = setInterval(tick, STEADY_TICK_MS)
  tick()
  await allIssued.promise
  const issuedAt = performance.now()
  const drained = await withTimeout(tracker.measuredReached(total), STEADY_DRAIN_CAP_MS)
  if (drained === 'timeout') log(`steady: ${total - tracker.measured} jobs not started within ${STEADY_DRAIN_CAP_MS} ms`)
  const completed = await withTimeout(adapter.awaitCompleted(tracker.total), STEADY_DRAIN_CAP_MS)
  const seconds = (performance.now() - t0) / 1000
  const latencies = []
  for (let id = 0; id < total; id++) {
    const start = tracker.starts.get(id)
    if (start !== undefined) latencies.push(start - insertStarts[id])
  }
  const processed = tracker.measured
  // Jobs processed per second over the offered window, or over the longer time it took to start them all.
  const processingSeconds = (tracker.lastStart - t0) / 1000
  const achieved = processed > 0 ? processed / Math.max(processingSeconds, args.duration) : 0
  return {
    ...base,
    duration: args.duration,
    seconds: round3(seconds),
    jobs_per_sec: round1(achieved),
    latency_ms: latencySummary(latencies),
    offered_rate: args.rate,
    achieved_rate: round1(achieved),
    issue_seconds: round3((issuedAt - t0) / 1000),
    processed,
    unprocessed: total - processed,
    insert_errors: insertErrors,
    max_inserts_in_flight: maxInFlight,
    completion_timed_out: completed === 'timeout'
  }
}

const round1 = (x) => Math.round(x * 10) / 10
const round3 = (x) => Math.round(x * 1000) / 1000

// Entry point used by each driver: parse, run, exit 0, or print the error and exit 1.
export async function main (makeAdapter, extraOptions) {
  const args = parseCli(process.argv.slice(2), extraOptions)
  const adapter = await makeAdapter(args)
  try {
    await runScenario(adapter, args)
  } catch (err) {
    log(`failed: ${err.stack || err}`)
    try { await adapter.close() } catch { /* already failing */ }
    process.exit(1)
  }
  // Libraries may leave timers behind; the result is already printed.
  process.exit(0)
}
