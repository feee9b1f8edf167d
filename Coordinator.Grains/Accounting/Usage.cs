using Dapper;
using Npgsql;

namespace Coordinator.Grains.Accounting;

public static class UsagePeriod
{
    public const string Daily = "daily";
    public const string Weekly = "weekly";
    public const string Monthly = "monthly";

    public static readonly IReadOnlyList<string> All = [Daily, Weekly, Monthly];

    /// <summary>Start of the current period in UTC: today, this ISO week's Monday, or the 1st of the month.</summary>
    public static DateTime StartOf(string period, DateTimeOffset now)
    {
        var today = now.UtcDateTime.Date;
        return period switch
        {
            Weekly => today.AddDays(-(((int)today.DayOfWeek + 6) % 7)),
            Monthly => new DateTime(today.Year, today.Month, 1, 0, 0, 0, DateTimeKind.Utc),
            _ => today,
        };
    }
}

public sealed record UsageReport(string Period, string? Tag, long TokensUsed, long RequestsUsed, IReadOnlyDictionary<string, long> ByTag);

/// <summary>
/// Tokens (input + output) and completed requests in the current UTC period, read from the account's completed jobs
/// (a completed job is its usage record: the result sets its tokens and completion time in the same update).
/// </summary>
public sealed class Usage(NpgsqlDataSource dataSource, TimeProvider time)
{
    public async Task<UsageReport> ReportAsync(long accountId, string period, string? tag, CancellationToken cancellationToken = default)
    {
        var from = DateTime.SpecifyKind(UsagePeriod.StartOf(period, time.GetUtcNow()), DateTimeKind.Utc);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<(string? Tag, long Tokens, long Requests)>(new CommandDefinition("""
            SELECT tag, sum(COALESCE(input_tokens, 0) + output_tokens)::bigint, count(*)
            FROM jobs
            WHERE account_id = @accountId AND status = 'completed' AND completed_at >= @from AND (@tag::text IS NULL OR tag = @tag)
            GROUP BY tag
            """, new { accountId, from, tag }, cancellationToken: cancellationToken))).AsList();
        var byTag = rows.Where(r => r.Tag is not null).ToDictionary(r => r.Tag!, r => r.Tokens, StringComparer.Ordinal);
        return new UsageReport(period, tag, rows.Sum(r => r.Tokens), rows.Sum(r => r.Requests), byTag);
    }
}
