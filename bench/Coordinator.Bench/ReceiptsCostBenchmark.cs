using System.Globalization;

namespace Coordinator.Bench;

/// <summary>
/// <c>receipts-cost</c> (issue #17: "the full lifecycle over HTTP with receipts falls at most 10% below the same run
/// without them"): the lifecycle scenario's run (<see cref="LifecycleRunAsync"/>: submit → worker poll → start → result
/// over HTTP, 32 workers, 16 submitters, one node) on nodes with <c>Receipts__Enabled=true</c> and on nodes with
/// <c>Receipts__Enabled=false</c>, interleaved run by run with the order turned each pair (ON OFF, OFF ON, …) so that the
/// machine's drift hits both. The ledger seals as it does by default (every 10 s or 500 receipts), so the ON runs pay for
/// signing, the receipt INSERT in the completion's transaction and the sealing. Each ON run must have issued exactly one
/// receipt per job it completed, each OFF run none, or the bench fails. This build only: pg-engine has no receipts.
/// </summary>
public sealed partial class ServiceBenchmarks
{
    /// <summary>Jobs/s may fall at most this much with receipts (issue #17).</summary>
    private const double ReceiptsCostTarget = 0.10;

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "a using declaration; the analyzer does not follow it in async methods")]
    public async Task ReceiptsCostAsync()
    {
        var jobs = options.Quick ? 2000 : 10000;
        var pairs = options.Quick ? 2 : Math.Max(options.Repeat, 5);
        var on = new List<LifecycleResult>();
        var off = new List<LifecycleResult>();
        var runs = new List<ReceiptsCostRun>();
        for (var pair = 0; pair < pairs; pair++)
        {
            foreach (var receipts in pair % 2 == 0 ? new[] { true, false } : [false, true])
            {
                var name = $"svc_receipts_{pair}_{(receipts ? "on" : "off")}";
                var loadBefore = LoadAverage();
                LifecycleResult result;
                long completed, issued, sealedReceipts, blocks;
                await using (var setup = await SingleNodeAsync(options.Ours, name, requestLimit: null,
                    new Dictionary<string, string> { ["Receipts__Enabled"] = receipts ? "true" : "false" }))
                {
                    result = await LifecycleRunAsync([setup.Node], setup.Key, jobs, workers: 32, submitters: 16, setup.Database);
                    completed = await database.ScalarAsync(setup.Database, "SELECT count(*) FROM jobs WHERE status = 'completed'");
                    issued = await database.ScalarAsync(setup.Database, "SELECT count(*) FROM receipts");
                    sealedReceipts = await database.ScalarAsync(setup.Database, "SELECT coalesce(sum(receipt_count), 0)::bigint FROM ledger_blocks");
                    blocks = await database.ScalarAsync(setup.Database, "SELECT count(*) FROM ledger_blocks");
                }
                // Its autovacuum must not run inside the next run's window.
                await database.DropAsync(name);
                var loadAfter = LoadAverage();
                var run = new ReceiptsCostRun(pair + 1, receipts, result, completed, issued, sealedReceipts, blocks, loadBefore, loadAfter);
                Console.WriteLine($"receipts-cost pair {pair + 1} receipts {(receipts ? "ON " : "OFF")}: {result}; {completed} jobs completed, {issued} receipts, " +
                    $"{sealedReceipts} sealed in {blocks} blocks by the run's end; load average {loadBefore} → {loadAfter}");
                if (completed != jobs || issued != (receipts ? completed : 0))
                {
                    throw new InvalidOperationException($"receipts-cost: {completed} of {jobs} jobs completed and {issued} receipts issued with receipts {(receipts ? "on" : "off")}; expected {(receipts ? "one per completed job" : "none")}");
                }
                runs.Add(run);
                (receipts ? on : off).Add(result);
            }
        }

        var a = LifecycleResult.MedianOf(on);
        var b = LifecycleResult.MedianOf(off);
        var pairedRatios = runs.GroupBy(r => r.Pair).Select(g => g.Single(r => r.Receipts).Result.JobsPerSecond / g.Single(r => !r.Receipts).Result.JobsPerSecond).ToList();
        var pairedRatio = LatencySummary.Median(pairedRatios);
        var fall = 1 - a.JobsPerSecond / b.JobsPerSecond;
        string Ratio(double x, double y) => (x / y).ToString("F2", CultureInfo.InvariantCulture) + "×";
        report.Set("service.receipts_cost", new
        {
            jobs, workers = 32, submitters = 16, pairs, receipts_on = a, receipts_off = b,
            jobs_per_second_ratio = a.JobsPerSecond / b.JobsPerSecond, paired_jobs_per_second_ratio = pairedRatio, paired_ratios = pairedRatios, fall,
            runs = runs.Select(r => new { r.Pair, r.Receipts, r.Result, r.Completed, r.Issued, sealed_receipts = r.Sealed, r.Blocks, load_before = r.LoadBefore, load_after = r.LoadAfter }),
        });
        report.Table("The cost of receipts: full lifecycle over HTTP with receipts ON and OFF (issue #17)",
            ["figure", "receipts ON", "receipts OFF", "ON ÷ OFF"],
        [
            ["jobs/s", Report.Num(a.JobsPerSecond), Report.Num(b.JobsPerSecond), Ratio(a.JobsPerSecond, b.JobsPerSecond)],
            ["SQL statements / job", Report.Num(a.StatementsPerJob, "F2"), Report.Num(b.StatementsPerJob, "F2"), Ratio(a.StatementsPerJob, b.StatementsPerJob)],
            ["WAL bytes / job", Report.Num(a.WalBytesPerJob), Report.Num(b.WalBytesPerJob), Ratio(a.WalBytesPerJob, b.WalBytesPerJob)],
            ["DB CPU ms / job", Report.Num(a.DbCpuMsPerJob, "F2"), Report.Num(b.DbCpuMsPerJob, "F2"), Ratio(a.DbCpuMsPerJob, b.DbCpuMsPerJob)],
            ["node CPU ms / job", Report.Num(a.NodeCpuMsPerJob, "F2"), Report.Num(b.NodeCpuMsPerJob, "F2"), Ratio(a.NodeCpuMsPerJob, b.NodeCpuMsPerJob)],
            ["jobs/s, median of the pairs' ON ÷ OFF", "", "", pairedRatio.ToString("F2", CultureInfo.InvariantCulture) + "×"],
            ["target: ON at most 10% below OFF in jobs/s", $"{fall:P1} below", "", Report.Verdict(fall <= ReceiptsCostTarget)],
        ],
        $"{jobs} jobs per run from one account, 32 simulated workers and 16 submitting clients on one node (the lifecycle scenario's run); {pairs} pairs of runs, ON and OFF interleaved with the order turned each pair; medians of {pairs} runs per side. " +
        $"Every ON run issued one receipt per completed job ({string.Join(", ", runs.Where(r => r.Receipts).Select(r => $"{r.Issued:N0}, {r.Sealed:N0} sealed in {r.Blocks} blocks"))} by the run's end); every OFF run none.");
        report.Table("The cost of receipts: every run", ["pair", "receipts", "jobs/s", "statements / job", "WAL bytes / job", "DB CPU ms / job", "node CPU ms / job", "receipts issued / sealed", "load average before → after"],
            runs.Select(r => new[]
            {
                r.Pair.ToString(CultureInfo.InvariantCulture), r.Receipts ? "ON" : "OFF", Report.Num(r.Result.JobsPerSecond), Report.Num(r.Result.StatementsPerJob, "F2"),
                Report.Num(r.Result.WalBytesPerJob), Report.Num(r.Result.DbCpuMsPerJob, "F2"), Report.Num(r.Result.NodeCpuMsPerJob, "F2"),
                $"{r.Issued:N0} / {r.Sealed:N0}", $"{r.LoadBefore} → {r.LoadAfter}",
            }));
    }

    /// <summary>The 1, 5 and 15 minute load averages (/proc/loadavg), or "n/a".</summary>
    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private sealed record ReceiptsCostRun(int Pair, bool Receipts, LifecycleResult Result, long Completed, long Issued, long Sealed, long Blocks, string LoadBefore, string LoadAfter);
}
