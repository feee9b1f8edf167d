using System.Net;
using Coordinator.Api.Operator;
using Coordinator.Grains.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

public class AccountDisableTests(OperatorHostFixture fixture) : IClassFixture<OperatorHostFixture>
{
    private GridHost Host => fixture.Host;

    private async Task<System.Text.Json.JsonElement> OperatorPostAsync(string path, HttpStatusCode expected, string? json = null)
    {
        using var response = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, path, fixture.OperatorKey, json);
        return await ApiClient.ExpectAsync(response, expected);
    }

    [Fact]
    public async Task Disabling_RefusesTheAccountsKeys_AndItsWorkersPolls_AndCancelsItsPendingJobs_UntilEnabled()
    {
        var (accountId, key) = await Host.Anonymous().SignUpAsync("to-disable");
        var client = Host.WithKey(key);
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("own-worker", ApiClient.Unique());
        var pending = await client.SubmitAsync(new { model, model_match = "exact", prompt = "never served" });

        var disabled = await OperatorPostAsync($"accounts/{accountId}/disable", HttpStatusCode.OK, """{"reason": "abuse report #12"}""");
        Assert.True(disabled.GetProperty("account").GetProperty("disabled").GetBoolean());
        Assert.Equal("abuse report #12", disabled.GetProperty("account").GetProperty("disabled_reason").GetString());
        Assert.Equal(1, disabled.GetProperty("cancelled_jobs").GetInt32());

        // This node forgets the account's cached keys at once: the client key, and the worker's key, are refused.
        var refused = await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.Unauthorized);
        Assert.Equal("this account is disabled", refused.GetProperty("message").GetString());
        await ApiClient.ExpectAsync(await worker.GetAsync("worker/jobs/next"), HttpStatusCode.Unauthorized);
        await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { model, prompt = "p" }), HttpStatusCode.Unauthorized);

        await using (var connection = await Host.OpenConnectionAsync())
        await using (var command = new Npgsql.NpgsqlCommand("SELECT status, error FROM jobs WHERE id = @id", connection))
        {
            command.Parameters.AddWithValue("id", pending);
            await using var reader = await command.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            Assert.Equal("cancelled", reader.GetString(0));
            Assert.Equal(AccountControl.CancelReason, reader.GetString(1));
        }

        using (var status = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, $"accounts/{accountId}", fixture.OperatorKey))
        {
            Assert.True((await ApiClient.ExpectAsync(status, HttpStatusCode.OK)).GetProperty("disabled").GetBoolean());
        }

        var enabled = await OperatorPostAsync($"accounts/{accountId}/enable", HttpStatusCode.OK);
        Assert.False(enabled.GetProperty("disabled").GetBoolean());
        Assert.Equal("abuse report #12", enabled.GetProperty("disabled_reason").GetString());
        await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        // Cancelled stays cancelled.
        Assert.Equal("cancelled", (await client.GetJobAsync(pending)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task ARunningJobOfADisabledAccount_FinishesOnItsWorker()
    {
        var (accountId, key) = await Host.Anonymous().SignUpAsync("disabled-client");
        var client = Host.WithKey(key);
        var volunteer = await Host.NewAccountAsync("volunteer");
        var model = ApiClient.Unique();
        var running = await client.SubmitAsync(new { model, model_match = "exact", prompt = "runs" });
        var (worker, _) = await volunteer.NewWorkerAsync("volunteer-worker", model);
        Assert.Equal(running, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{running}/start"), HttpStatusCode.OK);

        var disabled = await OperatorPostAsync($"accounts/{accountId}/disable", HttpStatusCode.OK);
        Assert.Equal(0, disabled.GetProperty("cancelled_jobs").GetInt32());
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{running}/result", new { output = "done", output_tokens = 3, duration_ms = 5 }), HttpStatusCode.OK);

        await OperatorPostAsync($"accounts/{accountId}/enable", HttpStatusCode.OK);
        Assert.Equal("completed", (await client.GetJobAsync(running)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task UnknownAccounts_Are404_AndBadBodies_422()
    {
        var missing = await OperatorPostAsync("accounts/987654321/disable", HttpStatusCode.NotFound);
        Assert.Equal("not_found", missing.GetProperty("error").GetString());
        await OperatorPostAsync("accounts/987654321/enable", HttpStatusCode.NotFound);
        var (accountId, _) = await Host.Anonymous().SignUpAsync("bad-bodies");
        await OperatorPostAsync($"accounts/{accountId}/disable", HttpStatusCode.UnprocessableEntity, """{"reason": 5}""");
        await OperatorPostAsync($"accounts/{accountId}/disable", HttpStatusCode.UnprocessableEntity, $$"""{"reason": "{{new string('x', OperatorApi.MaxReasonLength + 1)}}"}""");
        await OperatorPostAsync($"accounts/{accountId}/disable", HttpStatusCode.UnprocessableEntity, """{"reasons": "typo"}""");
        await OperatorPostAsync($"accounts/{accountId}/disable", HttpStatusCode.UnprocessableEntity, "[]");
        using var status = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, $"accounts/{accountId}", fixture.OperatorKey);
        Assert.False((await ApiClient.ExpectAsync(status, HttpStatusCode.OK)).GetProperty("disabled").GetBoolean());
    }
}

/// <summary>A disable on one node reaches another node's key cache within its bound (Accounts:KeyCacheDuration, 5 s).</summary>
public sealed class AccountDisableAcrossNodesTests : IAsyncLifetime
{
    private readonly string _key = OperatorKeys.Generate();
    private readonly ManualTimeProvider _clockB = new();
    private GridHost _a = null!;
    private GridHost _b = null!;

    public async Task InitializeAsync()
    {
        _a = await GridHost.StartAsync(settings: OperatorHost.Settings(_key));
        _b = await GridHost.StartAsync(_a.ConnectionString, time: _clockB, settings: OperatorHost.Settings(_key));
        await Eventually.TrueAsync(() => _a.IsActive && _b.IsActive, "both silos are active");
    }

    public async Task DisposeAsync()
    {
        await _b.DisposeAsync();
        await _a.DisposeAsync();
    }

    [Fact]
    public async Task NodeB_RefusesTheKey_OnceItsCacheEntryIsOlderThanTheKeyCacheDuration()
    {
        var (accountId, key) = await _a.Anonymous().SignUpAsync("disabled-on-a");
        var onB = _b.WithKey(key);
        await ApiClient.ExpectAsync(await onB.GetAsync("jobs"), HttpStatusCode.OK); // cached on node B now

        using var http = OperatorHost.Client(_a);
        using (var response = await OperatorHost.SendAsync(http, HttpMethod.Post, $"accounts/{accountId}/disable", _key))
        {
            await ApiClient.ExpectAsync(response, HttpStatusCode.OK);
        }
        await ApiClient.ExpectAsync(await _a.WithKey(key).GetAsync("jobs"), HttpStatusCode.Unauthorized);

        // Node B trusts its cached lookup for at most Accounts:KeyCacheDuration (5 s by default) on its clock.
        _clockB.Advance(TimeSpan.FromSeconds(4));
        await ApiClient.ExpectAsync(await onB.GetAsync("jobs"), HttpStatusCode.OK);
        _clockB.Advance(TimeSpan.FromSeconds(1.5));
        var refused = await ApiClient.ExpectAsync(await onB.GetAsync("jobs"), HttpStatusCode.Unauthorized);
        Assert.Equal("this account is disabled", refused.GetProperty("message").GetString());
    }
}
