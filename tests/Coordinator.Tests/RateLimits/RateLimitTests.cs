using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Coordinator.Api.RateLimits;
using Coordinator.Grains.Accounts;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.RateLimits;

/// <summary>
/// A node with small limits and hour-long windows (so no window reopens during a test, and nothing waits on a clock):
/// counts, 429s, <c>Retry-After</c> and each front door's error body. The tests run one after another on one node, each
/// with its own keys and its own (forwarded) client addresses.
/// </summary>
public sealed class RateLimitFixture : IAsyncLifetime
{
    public const int Limit = 5;
    public const int SignUpLimit = 3;
    public const int PollLimit = 2;
    public const int WorkerLimit = 8;

    private GridHost? _host;

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync() => _host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
    {
        ["RateLimits:Enabled"] = "true",
        ["RateLimits:Grid:PermitLimit"] = $"{Limit}",
        ["RateLimits:Grid:Window"] = "01:00:00",
        ["RateLimits:OpenAi:PermitLimit"] = $"{Limit}",
        ["RateLimits:OpenAi:Window"] = "01:00:00",
        ["RateLimits:Aitbc:PermitLimit"] = $"{Limit}",
        ["RateLimits:Aitbc:Window"] = "01:00:00",
        ["RateLimits:Agent:PermitLimit"] = $"{Limit}",
        ["RateLimits:Agent:Window"] = "01:00:00",
        ["RateLimits:SignUp:PermitLimit"] = $"{SignUpLimit}",
        ["RateLimits:SignUp:Window"] = "01:00:00",
        ["RateLimits:WorkerPollConcurrency"] = $"{PollLimit}",
        ["RateLimits:Workers:PermitLimit"] = $"{WorkerLimit}",
        ["RateLimits:Workers:Window"] = "01:00:00",
        // The demo's own limit, above the agent group's: what refuses a demo request is then only the demo's.
        ["Lightning:Demo:Limit"] = "100",
        // The tests pose as many clients through a trusted proxy on loopback.
        ["Network:TrustedProxies"] = "127.0.0.1",
    });

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
    }
}

public sealed class RateLimitTests(RateLimitFixture fixture) : IClassFixture<RateLimitFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task GridApi_KeyOverItsLimit_Gets429WithRetryAfterAndTheGridError_AnotherKeyIsUnaffected()
    {
        var key = await NewKeyAsync();
        for (var i = 0; i < RateLimitFixture.Limit; i++) Assert.Equal(HttpStatusCode.OK, (await SendAsync(Grid("usage"), bearer: key)).StatusCode);

        var refused = await SendAsync(Grid("usage"), bearer: key);
        var body = await ExpectRateLimitedAsync(refused, maxRetryAfter: 3600);
        Assert.Equal("rate_limited", body.GetProperty("error").GetString());
        Assert.Contains("too many requests", body.GetProperty("message").GetString(), StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(Grid("usage"), bearer: await NewKeyAsync())).StatusCode);
        // Health is never limited (load balancers probe it).
        for (var i = 0; i < RateLimitFixture.Limit + 2; i++) Assert.NotEqual(HttpStatusCode.TooManyRequests, (await SendAsync(Grid("health"))).StatusCode);
    }

    [Fact]
    public async Task OpenAi_KeyOverItsLimit_GetsOpenAisRateLimitError()
    {
        var key = await NewKeyAsync();
        var models = new Uri(Host.BaseAddress, "/v1/models");
        for (var i = 0; i < RateLimitFixture.Limit; i++) Assert.Equal(HttpStatusCode.OK, (await SendAsync(models, bearer: key)).StatusCode);

        var error = (await ExpectRateLimitedAsync(await SendAsync(models, bearer: key), maxRetryAfter: 3600)).GetProperty("error");
        Assert.Equal("requests", error.GetProperty("type").GetString());
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
        Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(models, bearer: await NewKeyAsync())).StatusCode);
    }

    [Fact]
    public async Task Aitbc_KeyOverItsLimit_GetsTheAitbcError()
    {
        var key = await NewKeyAsync();
        var jobs = new Uri(Host.Aitbc.BaseAddress!, "v1/jobs");
        for (var i = 0; i < RateLimitFixture.Limit; i++) Assert.Equal(HttpStatusCode.OK, (await SendAsync(jobs, apiKey: key)).StatusCode);

        var body = await ExpectRateLimitedAsync(await SendAsync(jobs, apiKey: key), maxRetryAfter: 3600);
        Assert.Equal("rate_limited", body.GetProperty("error_code").GetString());
        Assert.False(string.IsNullOrEmpty(body.GetProperty("detail").GetString()));

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(jobs, apiKey: await NewKeyAsync())).StatusCode);
    }

    [Fact]
    public async Task LightningAgent_AnonymousCallersAreCountedPerClientAddress_AndGetTheAgentError()
    {
        var healthz = new Uri(Host.BaseAddress, "/api/healthz");
        var (first, second) = (NewAddress(), NewAddress());
        for (var i = 0; i < RateLimitFixture.Limit; i++) Assert.Equal(HttpStatusCode.OK, (await SendAsync(healthz, from: first)).StatusCode);

        var body = await ExpectRateLimitedAsync(await SendAsync(healthz, from: first), maxRetryAfter: 3600);
        Assert.Equal(JsonValueKind.String, body.GetProperty("error").ValueKind);
        Assert.Single(body.EnumerateObject());

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(healthz, from: second)).StatusCode);
        // A token is its own caller, whatever address it comes from.
        Assert.NotEqual(HttpStatusCode.TooManyRequests, (await SendAsync(new Uri(Host.BaseAddress, "/api/jobs/none"), bearer: "some-session-token", from: first)).StatusCode);
    }

    [Fact]
    public async Task LightningDemo_KeepsItsOwnLimit_NotTheAgentGroups()
    {
        var from = NewAddress();
        var demo = new Uri(Host.BaseAddress, "/api/demo");
        // Without its parameter each is a 400 from the demo itself, counted by its own limiter (100 here), never the group's 5.
        for (var i = 0; i < RateLimitFixture.Limit + 2; i++)
        {
            var response = await SendAsync(demo, from: from);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("100", response.Headers.GetValues("X-RateLimit-Limit").Single());
        }
    }

    [Fact]
    public async Task WorkerKey_OverTheWorkerRate_IsRefused_ButItsPollsAreNotCounted()
    {
        var client = Host.WithKey(await NewKeyAsync());
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("busy", model); // its registration is the first request
        for (var i = 1; i < RateLimitFixture.WorkerLimit; i++) Assert.Equal(HttpStatusCode.OK, (await worker.PatchAsync("worker/heartbeat")).StatusCode);

        var body = await ExpectRateLimitedAsync(await worker.PatchAsync("worker/heartbeat"), maxRetryAfter: 3600);
        Assert.Equal("rate_limited", body.GetProperty("error").GetString());
        Assert.True(await PollIsAdmittedAsync(worker, model), "a poll of a worker over its request rate was refused");
        // The client's own key is another caller.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("usage")).StatusCode);
    }

    [Fact]
    public async Task SignUp_IsLimitedPerClientAddress_BehindATrustedProxy()
    {
        var (first, second) = (NewAddress(), NewAddress());
        for (var i = 0; i < RateLimitFixture.SignUpLimit; i++) Assert.Equal(HttpStatusCode.Created, (await SignUpAsync(first)).StatusCode);

        var body = await ExpectRateLimitedAsync(await SignUpAsync(first), maxRetryAfter: 3600);
        Assert.Equal("rate_limited", body.GetProperty("error").GetString());

        Assert.Equal(HttpStatusCode.Created, (await SignUpAsync(second)).StatusCode);
    }

    [Fact]
    public async Task WorkerPolls_AreLimitedInConcurrencyPerWorkerKey_NotInRate()
    {
        var client = Host.WithKey(await NewKeyAsync());
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("poller", model);
        var (other, _) = await client.NewWorkerAsync("other", model);

        using var stop = new CancellationTokenSource();
        var before = Host.PollsWaiting;
        var held = Enumerable.Range(0, RateLimitFixture.PollLimit)
            .Select(_ => worker.GetAsync($"worker/jobs/next?models[]={model}", stop.Token)).ToList();
        await Eventually.TrueAsync(() => Host.PollsWaiting >= before + RateLimitFixture.PollLimit, "the worker's polls are held open");

        // Past the limit the answer is at once (the poll would otherwise wait its 30 s window).
        var started = System.Diagnostics.Stopwatch.StartNew();
        var refused = await worker.GetAsync($"worker/jobs/next?models[]={model}");
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"refused after {started.Elapsed}");
        var body = await ExpectRateLimitedAsync(refused, maxRetryAfter: 1);
        Assert.Equal("rate_limited", body.GetProperty("error").GetString());

        // Another worker key polls; and the worker's other requests go on (the held polls are not a request rate).
        using var otherStop = new CancellationTokenSource();
        var otherPoll = other.GetAsync($"worker/jobs/next?models[]={model}", otherStop.Token);
        await Eventually.TrueAsync(() => Host.PollsWaiting >= before + RateLimitFixture.PollLimit + 1, "another worker's poll is held open");
        Assert.Equal(HttpStatusCode.OK, (await worker.PatchAsync("worker/heartbeat")).StatusCode);

        // A poll that ends gives its place back.
        await stop.CancelAsync();
        await otherStop.CancelAsync();
        foreach (var poll in held.Append(otherPoll)) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => poll);
        await Eventually.TrueAsync(() => Host.PollsWaiting <= before, "the polls ended");
        Assert.True(await PollIsAdmittedAsync(worker, model), "a poll after the held ones ended was refused");
    }

    /// <summary>Whether a poll is let in: it is held open (cancelled here after 2 s) or answered, but not refused.</summary>
    private static async Task<bool> PollIsAdmittedAsync(ApiClient worker, string model)
    {
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            var response = await worker.GetAsync($"worker/jobs/next?models[]={model}", wait.Token);
            return response.StatusCode != HttpStatusCode.TooManyRequests;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    private async Task<string> NewKeyAsync() => (await Host.Get<AccountStore>().CreateAccountAsync("rate")).ApiKey;

    private Uri Grid(string path) => new(Host.BaseAddress, path);

    private Task<HttpResponseMessage> SignUpAsync(string from) =>
        SendAsync(Grid("accounts"), from: from, method: HttpMethod.Post, json: """{"name":"rate"}""");

    private static int _addresses;

    /// <summary>A client address of its own (TEST-NET-3), forwarded by the trusted proxy on loopback.</summary>
    private static string NewAddress()
    {
        var n = Interlocked.Increment(ref _addresses);
        return $"203.0.{113 + n / 250}.{n % 250 + 1}";
    }

    private Task<HttpResponseMessage> SendAsync(Uri uri, string? bearer = null, string? apiKey = null, string? from = null, HttpMethod? method = null, string? json = null) =>
        Send(Host.Http, uri, bearer, apiKey, from, method, json);

    internal static async Task<HttpResponseMessage> Send(HttpClient http, Uri uri, string? bearer = null, string? apiKey = null, string? from = null, HttpMethod? method = null, string? json = null)
    {
        using var request = new HttpRequestMessage(method ?? HttpMethod.Get, uri);
        if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        if (apiKey is not null) request.Headers.Add("X-Api-Key", apiKey);
        if (from is not null) request.Headers.Add("X-Forwarded-For", from);
        if (json is not null) request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        return await http.SendAsync(request);
    }

    internal static async Task<JsonElement> ExpectRateLimitedAsync(HttpResponseMessage response, int maxRetryAfter)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.TooManyRequests, $"expected 429 but got {(int)response.StatusCode}: {text}");
        var retryAfter = response.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter.Value.TotalSeconds, 1, maxRetryAfter);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(text).RootElement.Clone();
    }
}

/// <summary>Limits switched off, all at once or one group at a time.</summary>
public sealed class RateLimitSettingsTests
{
    [Fact]
    public async Task Disabled_NoRequestIsRefused()
    {
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
        {
            ["RateLimits:Enabled"] = "false",
            ["RateLimits:Grid:PermitLimit"] = "1",
            ["RateLimits:SignUp:PermitLimit"] = "1",
        });
        for (var i = 0; i < 5; i++)
        {
            var (_, key) = await host.Anonymous().SignUpAsync("free");
            Assert.Equal(HttpStatusCode.OK, (await host.WithKey(key).GetAsync("usage")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await host.WithKey(key).GetAsync("usage")).StatusCode);
        }
    }

    [Fact]
    public async Task GroupWithPermitLimitZero_IsOff_TheOthersStillHold()
    {
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
        {
            ["RateLimits:Enabled"] = "true",
            ["RateLimits:Grid:PermitLimit"] = "0",
            ["RateLimits:SignUp:PermitLimit"] = "1",
        });
        var (_, key) = await host.Anonymous().SignUpAsync("first");
        for (var i = 0; i < 20; i++) Assert.Equal(HttpStatusCode.OK, (await host.WithKey(key).GetAsync("usage")).StatusCode);
        await RateLimitTests.ExpectRateLimitedAsync(await host.Anonymous().PostAsync("accounts", new { name = "second" }), maxRetryAfter: 3600);
    }

    [Fact]
    public async Task TheWindowFollowsTheClock_AndRetryAfterSaysWhenItReopens()
    {
        // 20 s into a minute, on a clock that moves only when told.
        var now = DateTimeOffset.UtcNow;
        var time = new ManualTimeProvider(new DateTimeOffset(now.UtcTicks - now.UtcTicks % TimeSpan.TicksPerMinute, TimeSpan.Zero).AddSeconds(20));
        await using var host = await GridHost.StartAsync(time: time, settings: new Dictionary<string, string?>
        {
            ["RateLimits:Enabled"] = "true",
            ["RateLimits:Grid:PermitLimit"] = "3",
            ["RateLimits:Grid:Window"] = "00:01:00",
        });
        var client = host.WithKey((await host.Get<AccountStore>().CreateAccountAsync("clock")).ApiKey);
        for (var i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("usage")).StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(40), (await Refused()).Headers.RetryAfter!.Delta);

        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(TimeSpan.FromSeconds(10), (await Refused()).Headers.RetryAfter!.Delta);

        time.Advance(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("usage")).StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(60), (await Refused()).Headers.RetryAfter!.Delta);

        async Task<HttpResponseMessage> Refused()
        {
            var response = await client.GetAsync("usage");
            await RateLimitTests.ExpectRateLimitedAsync(response, maxRetryAfter: 60);
            return response;
        }
    }

    [Fact]
    public async Task InvalidSettings_StopTheStartWithAMessageThatNamesThem()
    {
        var failure = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
            {
                ["RateLimits:Enabled"] = "true",
                ["RateLimits:OpenAi:Window"] = "00:00:00",
            });
        });
        Assert.Contains("RateLimits:OpenAi:Window", failure.ToString(), StringComparison.Ordinal);
    }
}

/// <summary>Two silos share each limit: each allows the limit divided by the active silos.</summary>
public sealed class RateLimitClusterTests
{
    [Fact]
    public async Task TwoSilos_EachAllowsHalf_SoTheClusterAllowsTheLimit()
    {
        const int limit = 10;
        var settings = new Dictionary<string, string?>
        {
            ["RateLimits:Enabled"] = "true",
            ["RateLimits:Grid:PermitLimit"] = $"{limit}",
            ["RateLimits:Grid:Window"] = "01:00:00",
        };
        await using var a = await GridHost.StartAsync(settings: settings);
        var accounts = a.Get<AccountStore>();

        // Alone, a silo allows the whole limit.
        var alone = (await accounts.CreateAccountAsync("alone")).ApiKey;
        Assert.Equal(limit, await AllowedAsync(a, alone, limit + 3));

        await using var b = await GridHost.StartAsync(a.ConnectionString, settings: settings);
        await Eventually.TrueAsync(() => a.Get<ActiveSilos>().Count == 2 && b.Get<ActiveSilos>().Count == 2, "both silos count two active silos");

        // With two, each allows half: a client pinned to one silo gets half the limit; spread over both, the whole.
        var pinned = (await accounts.CreateAccountAsync("pinned")).ApiKey;
        Assert.Equal(limit / 2, await AllowedAsync(a, pinned, limit));
        var spread = (await accounts.CreateAccountAsync("spread")).ApiKey;
        Assert.Equal(limit / 2, await AllowedAsync(a, spread, limit));
        Assert.Equal(limit / 2, await AllowedAsync(b, spread, limit));
    }

    private static async Task<int> AllowedAsync(GridHost host, string key, int attempts)
    {
        var allowed = 0;
        for (var i = 0; i < attempts; i++)
        {
            var response = await host.WithKey(key).GetAsync("usage");
            if (response.StatusCode == HttpStatusCode.OK) allowed++;
            else await RateLimitTests.ExpectRateLimitedAsync(response, maxRetryAfter: 3600);
        }
        return allowed;
    }
}
