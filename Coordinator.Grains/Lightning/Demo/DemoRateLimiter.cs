using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Lightning.Demo;

/// <summary>
/// The free demo's per-client fixed-window limit, in PostgreSQL so that it holds across silos: each request is one
/// upsert on the client's row that either starts a new window with one hit or adds one to the current window. The time
/// is this silo's <see cref="TimeProvider"/>, passed in (not the database's <c>now()</c>), so that tests move it. Ended
/// windows are swept by <see cref="DeleteEndedWindowsAsync"/>, which each limiter also runs itself once a window.
/// </summary>
public sealed class DemoRateLimiter(NpgsqlDataSource dataSource, TimeProvider time, IOptions<DemoRateLimitOptions> options)
{
    // The row is locked from the conflict to the commit, so concurrent hits of one client take turns and each sees the
    // count the one before left. Every SET expression reads the row as it was before this update. The count stops at
    // limit + 1: it can never overflow, and a denial needs no more.
    private const string HitSql = """
        INSERT INTO lightning_demo_rate_limits AS r (client_key, window_started_at, hits) VALUES (@clientKey, @now, 1)
        ON CONFLICT (client_key) DO UPDATE SET
            window_started_at = CASE WHEN r.window_started_at + @window <= @now THEN @now ELSE r.window_started_at END,
            hits = CASE WHEN r.window_started_at + @window <= @now THEN 1 ELSE least(r.hits, @limit) + 1 END
        RETURNING hits, window_started_at
        """;

    private long _nextSweepTicks = long.MinValue;

    /// <summary>Counts a request of <paramref name="clientKey"/> (see <c>ClientAddress()</c>) and answers whether it is within the limit.</summary>
    public async Task<RateLimitDecision> HitAsync(string clientKey, CancellationToken cancellationToken = default)
    {
        var settings = options.Value;
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var (hits, windowStartedAt) = await connection.QuerySingleAsync<(int Hits, DateTimeOffset WindowStartedAt)>(new CommandDefinition(HitSql,
            new { clientKey, now, window = settings.Window, limit = settings.Limit }, cancellationToken: cancellationToken));
        await SweepIfDueAsync(connection, now, settings.Window, cancellationToken);
        return new RateLimitDecision(hits <= settings.Limit, settings.Limit, Math.Max(0, settings.Limit - hits), windowStartedAt + settings.Window);
    }

    /// <summary>Deletes the rows whose window has ended (a client's next request starts a new one anyway); answers how many.</summary>
    public async Task<int> DeleteEndedWindowsAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await DeleteEndedAsync(connection, time.GetUtcNow(), options.Value.Window, cancellationToken);
    }

    /// <summary>Runs the sweep at most once a window per silo, on the connection a request already holds: no timer, and rows live at most two windows.</summary>
    private async Task SweepIfDueAsync(NpgsqlConnection connection, DateTimeOffset now, TimeSpan window, CancellationToken cancellationToken)
    {
        var due = Interlocked.Read(ref _nextSweepTicks);
        if (now.UtcTicks < due || Interlocked.CompareExchange(ref _nextSweepTicks, (now + window).UtcTicks, due) != due) return;
        await DeleteEndedAsync(connection, now, window, cancellationToken);
    }

    private static Task<int> DeleteEndedAsync(NpgsqlConnection connection, DateTimeOffset now, TimeSpan window, CancellationToken cancellationToken) =>
        connection.ExecuteAsync(new CommandDefinition(
            "DELETE FROM lightning_demo_rate_limits WHERE window_started_at <= @endedBefore",
            new { endedBefore = now - window }, cancellationToken: cancellationToken));
}
