using System.Diagnostics;

namespace Coordinator.Bench;

/// <summary>Latency samples in milliseconds, summarised as percentiles.</summary>
public sealed class Latencies
{
    private readonly List<double> _samples = [];
    private readonly Lock _lock = new();

    public int Count => _samples.Count;

    public void Add(double milliseconds)
    {
        lock (_lock) _samples.Add(milliseconds);
    }

    public void AddSince(long startTimestamp) => Add(Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds);

    public LatencySummary Summarise()
    {
        double[] sorted;
        lock (_lock) sorted = [.. _samples.Order()];
        if (sorted.Length == 0) return new LatencySummary(0, double.NaN, double.NaN, double.NaN, double.NaN);
        return new LatencySummary(sorted.Length, Percentile(sorted, 50), Percentile(sorted, 95), Percentile(sorted, 99), sorted[^1]);
    }

    /// <summary>Nearest-rank percentile of an ascending array.</summary>
    public static double Percentile(double[] sorted, double p)
    {
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}

public sealed record LatencySummary(int Count, double P50, double P95, double P99, double Max)
{
    public override string ToString() => $"p50 {P50:F2} ms, p95 {P95:F2} ms, p99 {P99:F2} ms, max {Max:F2} ms (n={Count})";

    /// <summary>The median of each statistic over repeated runs.</summary>
    public static LatencySummary MedianOf(IReadOnlyList<LatencySummary> runs) => new(
        runs.Sum(r => r.Count),
        Median(runs.Select(r => r.P50)), Median(runs.Select(r => r.P95)), Median(runs.Select(r => r.P99)), Median(runs.Select(r => r.Max)));

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}

/// <summary>CPU time and resident memory of a process, read from /proc.</summary>
public static class ProcessStats
{
    private static readonly double TicksPerSecond = 100.0; // USER_HZ on Linux

    /// <summary>User + system CPU seconds of one process.</summary>
    public static double CpuSeconds(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // fields[0] is state (field 3); utime is field 14, stime 15.
            return (long.Parse(fields[11]) + long.Parse(fields[12])) / TicksPerSecond;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    public static int ParentOf(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[1]);
    }

    /// <summary>CPU seconds of a process and all its direct children (PostgreSQL's postmaster and its backends).</summary>
    public static double TreeCpuSeconds(int rootPid)
    {
        var total = CpuSeconds(rootPid);
        try
        {
            // cutime + cstime: backends that already exited and were reaped by the postmaster.
            var own = File.ReadAllText($"/proc/{rootPid}/stat");
            var ownFields = own[(own.LastIndexOf(')') + 2)..].Split(' ');
            total += (long.Parse(ownFields[13]) + long.Parse(ownFields[14])) / TicksPerSecond;
        }
        catch (IOException)
        {
        }
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == rootPid) continue;
            try
            {
                var stat = File.ReadAllText($"{dir}/stat");
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1]) != rootPid) continue;
                total += (long.Parse(fields[11]) + long.Parse(fields[12])) / TicksPerSecond;
            }
            catch (IOException)
            {
            }
        }
        return total;
    }

    public static double RssMegabytes(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
            }
        }
        return double.NaN;
    }
}
