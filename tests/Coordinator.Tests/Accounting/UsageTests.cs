using System.Net;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Accounting;

/// <summary>A node whose clock starts on Wednesday 2026-03-04 10:00 UTC, so the calendar periods are known.</summary>
public sealed class WednesdayHostFixture : IAsyncLifetime
{
    public ManualTimeProvider Clock { get; } = new(new DateTimeOffset(2026, 3, 4, 10, 0, 0, TimeSpan.Zero));

    public GridHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await GridHost.StartAsync(time: Clock);

    public async Task DisposeAsync() => await Host.DisposeAsync();
}

public class UsageTests(WednesdayHostFixture fixture) : IClassFixture<WednesdayHostFixture>
{
    private GridHost Host => fixture.Host;

    private static async Task CompleteJobAsync(ApiClient client, string? tag, int inputTokens, int outputTokens)
    {
        var (worker, id, _) = await client.SubmitAndClaimAsync(new { tag }, start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output = "o", input_tokens = inputTokens, output_tokens = outputTokens, duration_ms = 5 }), HttpStatusCode.OK);
    }

    private static async Task<System.Text.Json.JsonElement> UsageAsync(ApiClient client, string query = "") =>
        await ApiClient.ExpectAsync(await client.GetAsync("usage" + query), HttpStatusCode.OK);

    [Fact]
    public async Task Usage_CountsTokensRequestsAndTags_AcrossTheCalendar()
    {
        var client = await Host.NewAccountAsync();
        await CompleteJobAsync(client, "alpha", 10, 90);
        await CompleteJobAsync(client, "alpha", 5, 5);
        await CompleteJobAsync(client, "beta", 0, 40);
        await CompleteJobAsync(client, null, 1, 1);
        await client.SubmitAsync(new { prompt = "still pending", tag = "alpha" });

        var daily = await UsageAsync(client);
        Assert.Equal("daily", daily.GetProperty("period").GetString());
        Assert.Equal(152, daily.GetProperty("tokens_used").GetInt64());
        Assert.Equal(4, daily.GetProperty("requests_used").GetInt64());
        Assert.Equal(110, daily.GetProperty("by_tag").GetProperty("alpha").GetInt64());
        Assert.Equal(40, daily.GetProperty("by_tag").GetProperty("beta").GetInt64());

        var alpha = await UsageAsync(client, "?tag=alpha");
        Assert.Equal("alpha", alpha.GetProperty("tag").GetString());
        Assert.Equal(110, alpha.GetProperty("tokens_used").GetInt64());
        Assert.Equal(2, alpha.GetProperty("requests_used").GetInt64());

        fixture.Clock.Advance(TimeSpan.FromDays(1)); // Thursday
        Assert.Equal(0, (await UsageAsync(client)).GetProperty("tokens_used").GetInt64());
        Assert.Equal(152, (await UsageAsync(client, "?period=weekly")).GetProperty("tokens_used").GetInt64());
        fixture.Clock.Advance(TimeSpan.FromDays(4)); // Monday 9 March: a new ISO week
        Assert.Equal(0, (await UsageAsync(client, "?period=weekly")).GetProperty("tokens_used").GetInt64());
        Assert.Equal(152, (await UsageAsync(client, "?period=monthly")).GetProperty("tokens_used").GetInt64());
        fixture.Clock.Advance(TimeSpan.FromDays(23)); // 1 April
        Assert.Equal(0, (await UsageAsync(client, "?period=monthly")).GetProperty("tokens_used").GetInt64());
    }

    [Fact]
    public async Task Usage_IsScopedToTheAccount_AndRefusesABadPeriod()
    {
        var mine = await Host.NewAccountAsync();
        var theirs = await Host.NewAccountAsync();
        await CompleteJobAsync(theirs, "x", 1, 1);
        Assert.Equal(0, (await UsageAsync(mine)).GetProperty("tokens_used").GetInt64());
        await ApiClient.ExpectAsync(await mine.GetAsync("usage?period=yearly"), HttpStatusCode.UnprocessableEntity);
    }
}
