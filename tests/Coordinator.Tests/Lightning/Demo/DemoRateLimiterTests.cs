using Coordinator.Grains;
using Coordinator.Grains.Database;
using Coordinator.Grains.Lightning.Demo;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Tests.Lightning.Demo;

/// <summary>The free demo's limit in real PostgreSQL: five an hour per client, the same count for every silo, under concurrency too.</summary>
public sealed class DemoRateLimiterTests
{
    private static readonly DateTimeOffset Start = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private static async Task<NpgsqlDataSource> NewDatabaseAsync()
    {
        var dataSource = GridServiceCollectionExtensions.BuildDataSource(await TestDatabase.CreateAsync());
        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();
        return dataSource;
    }

    private static DemoRateLimiter Limiter(NpgsqlDataSource dataSource, TimeProvider time, DemoRateLimitOptions? settings = null) =>
        new(dataSource, time, Options.Create(settings ?? new DemoRateLimitOptions()));

    [Fact]
    public async Task FiveAllowed_ThenDenied_UntilTheWindowEnds()
    {
        await using var dataSource = await NewDatabaseAsync();
        var time = new ManualTimeProvider(Start);
        var limiter = Limiter(dataSource, time);

        var decisions = new List<RateLimitDecision>();
        for (var i = 0; i < 5; i++)
        {
            decisions.Add(await limiter.HitAsync("198.51.100.7"));
            time.Advance(TimeSpan.FromMinutes(1));
        }
        Assert.All(decisions, decision => Assert.True(decision.Allowed));
        Assert.Equal([4, 3, 2, 1, 0], decisions.Select(decision => decision.Remaining));
        Assert.All(decisions, decision => Assert.Equal(5, decision.Limit));
        // The window runs an hour from the first request, not from each.
        Assert.All(decisions, decision => Assert.Equal(Start.AddHours(1), decision.ResetAt));
        Assert.Equal(Start.AddHours(1).ToUnixTimeSeconds(), decisions[0].ResetUnixSeconds);

        var denied = await limiter.HitAsync("198.51.100.7");
        Assert.Equal(new RateLimitDecision(false, 5, 0, Start.AddHours(1)), denied);
        // Another client has its own count.
        Assert.Equal(new RateLimitDecision(true, 5, 4, time.GetUtcNow().AddHours(1)), await limiter.HitAsync("198.51.100.8"));

        time.Advance(Start.AddHours(1) - time.GetUtcNow() - TimeSpan.FromSeconds(1));
        Assert.False((await limiter.HitAsync("198.51.100.7")).Allowed);
        time.Advance(TimeSpan.FromSeconds(1));
        var again = await limiter.HitAsync("198.51.100.7");
        Assert.Equal(new RateLimitDecision(true, 5, 4, Start.AddHours(2)), again);
    }

    [Fact]
    public async Task TwoSilosOnOneDatabase_ShareTheCount()
    {
        await using var dataSource = await NewDatabaseAsync();
        var time = new ManualTimeProvider(Start);
        var first = Limiter(dataSource, time);
        var second = Limiter(dataSource, time);

        var decisions = new List<RateLimitDecision>();
        for (var i = 0; i < 6; i++) decisions.Add(await (i % 2 == 0 ? first : second).HitAsync("203.0.113.9"));

        Assert.Equal([true, true, true, true, true, false], decisions.Select(decision => decision.Allowed));
        Assert.Equal([4, 3, 2, 1, 0, 0], decisions.Select(decision => decision.Remaining));
    }

    [Fact]
    public async Task TwentyConcurrentHits_AllowExactlyFive()
    {
        await using var dataSource = await NewDatabaseAsync();
        var time = new ManualTimeProvider(Start);
        var silos = new[] { Limiter(dataSource, time), Limiter(dataSource, time) };

        var decisions = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => silos[i % 2].HitAsync("192.0.2.1"))));

        Assert.Equal(5, decisions.Count(decision => decision.Allowed));
        Assert.Equal([0, 1, 2, 3, 4], decisions.Where(decision => decision.Allowed).Select(decision => decision.Remaining).Order());
        Assert.All(decisions.Where(decision => !decision.Allowed), decision => Assert.Equal(0, decision.Remaining));
        await using var connection = await dataSource.OpenConnectionAsync();
        Assert.Equal(6, await connection.QuerySingleAsync<int>("SELECT hits FROM lightning_demo_rate_limits WHERE client_key = '192.0.2.1'"));
    }

    [Fact]
    public async Task LimitAndWindow_ComeFromTheSettings()
    {
        await using var dataSource = await NewDatabaseAsync();
        var time = new ManualTimeProvider(Start);
        var limiter = Limiter(dataSource, time, new DemoRateLimitOptions { Limit = 2, Window = TimeSpan.FromMinutes(10) });

        Assert.Equal(new RateLimitDecision(true, 2, 1, Start.AddMinutes(10)), await limiter.HitAsync("c"));
        Assert.Equal(new RateLimitDecision(true, 2, 0, Start.AddMinutes(10)), await limiter.HitAsync("c"));
        Assert.Equal(new RateLimitDecision(false, 2, 0, Start.AddMinutes(10)), await limiter.HitAsync("c"));
        time.Advance(TimeSpan.FromMinutes(10));
        Assert.True((await limiter.HitAsync("c")).Allowed);
    }

    [Fact]
    public async Task EndedWindows_AreDeleted_ByTheSweepAndByALaterRequest()
    {
        await using var dataSource = await NewDatabaseAsync();
        var time = new ManualTimeProvider(Start);
        var limiter = Limiter(dataSource, time);
        await limiter.HitAsync("old-1");
        await limiter.HitAsync("old-2");
        time.Advance(TimeSpan.FromMinutes(30));
        await limiter.HitAsync("recent");

        Assert.Equal(0, await limiter.DeleteEndedWindowsAsync());
        time.Advance(TimeSpan.FromMinutes(30));
        Assert.Equal(2, await limiter.DeleteEndedWindowsAsync());
        Assert.Equal(["recent"], await ClientsAsync(dataSource));

        // A limiter sweeps by itself at most once a window, on a request: the first request swept, so the next one an
        // hour on sweeps again (taking "recent" and "new", whose windows have ended) and one in between does not.
        await limiter.HitAsync("new");
        time.Advance(TimeSpan.FromMinutes(59));
        await limiter.HitAsync("newer");
        Assert.Equal(["new", "newer", "recent"], await ClientsAsync(dataSource));
        time.Advance(TimeSpan.FromMinutes(2));
        await limiter.HitAsync("newest");
        Assert.Equal(["newer", "newest"], await ClientsAsync(dataSource));
    }

    private static async Task<List<string>> ClientsAsync(NpgsqlDataSource dataSource)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        return (await connection.QueryAsync<string>("SELECT client_key FROM lightning_demo_rate_limits ORDER BY client_key")).AsList();
    }

    [Theory]
    [InlineData("0", "01:00:00")]
    [InlineData("5", "00:00:00")]
    [InlineData("5", "-01:00:00")]
    public void BadSettings_FailValidation(string limit, string window)
    {
        var settings = new DemoRateLimitOptions { Limit = int.Parse(limit, System.Globalization.CultureInfo.InvariantCulture), Window = TimeSpan.Parse(window, System.Globalization.CultureInfo.InvariantCulture) };
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        Assert.False(System.ComponentModel.DataAnnotations.Validator.TryValidateObject(settings, new(settings), results, validateAllProperties: true));
        Assert.NotEmpty(results);
        var defaults = new DemoRateLimitOptions();
        Assert.True(System.ComponentModel.DataAnnotations.Validator.TryValidateObject(defaults, new(defaults), results, validateAllProperties: true));
    }
}
