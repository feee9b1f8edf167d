using System.Net;
using Coordinator.Tests.Infrastructure;
using Npgsql;

namespace Coordinator.Tests.Api;

public class AccountsAndKeysTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task SignUp_AnswersAccountAndAKeyShownOnce()
    {
        var (accountId, key) = await Host.Anonymous().SignUpAsync("alice");
        Assert.True(accountId > 0);
        Assert.StartsWith("vk_live_", key);
        Assert.Equal(8 + 43, key.Length); // 256 bits in base64url

        var keys = await ApiClient.ExpectAsync(await Host.WithKey(key).GetAsync("keys"), HttpStatusCode.OK);
        var listed = Assert.Single(keys.EnumerateArray());
        Assert.Equal(key[..12], listed.GetProperty("prefix").GetString());
        Assert.DoesNotContain(key, keys.GetRawText());
    }

    [Fact]
    public async Task Keys_AreStoredOnlyAsSha256()
    {
        var (_, key) = await Host.Anonymous().SignUpAsync("hash-check");
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM api_keys WHERE key_hash = sha256(convert_to(@key, 'UTF8'))", connection);
        command.Parameters.AddWithValue("key", key);
        Assert.Equal(1L, await command.ExecuteScalarAsync());
        await using var dump = new NpgsqlCommand("SELECT string_agg(api_keys::text, '') FROM api_keys", connection);
        Assert.DoesNotContain(key[8..], (string)(await dump.ExecuteScalarAsync())!);
    }

    [Fact]
    public async Task SignUp_WithoutName_Is422()
    {
        var response = await Host.Anonymous().PostAsync("accounts", new { });
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.UnprocessableEntity);
        Assert.Contains("name is required", body.GetProperty("message").GetString());
    }

    [Fact]
    public async Task CreateKey_ShowsTheSecretOnce_AndItWorks()
    {
        var client = await Host.NewAccountAsync();
        var created = await ApiClient.ExpectAsync(await client.PostAsync("keys", new { name = "worker-1" }), HttpStatusCode.Created);
        var secret = created.GetProperty("key").GetString()!;
        Assert.Equal("worker-1", created.GetProperty("name").GetString());
        Assert.Equal(secret[..12], created.GetProperty("prefix").GetString());

        await ApiClient.ExpectAsync(await Host.WithKey(secret).GetAsync("jobs"), HttpStatusCode.OK);
        var list = await ApiClient.ExpectAsync(await client.GetAsync("keys"), HttpStatusCode.OK);
        Assert.Equal(2, list.GetArrayLength());
        Assert.DoesNotContain(secret, list.GetRawText());
    }

    [Fact]
    public async Task RevokedKey_StopsWorkingAtOnce()
    {
        var client = await Host.NewAccountAsync();
        var created = await ApiClient.ExpectAsync(await client.PostAsync("keys", new { name = "temp" }), HttpStatusCode.Created);
        var other = Host.WithKey(created.GetProperty("key").GetString()!);
        await ApiClient.ExpectAsync(await other.GetAsync("jobs"), HttpStatusCode.OK); // now cached on this node

        await ApiClient.ExpectAsync(await client.DeleteAsync($"keys/{created.GetProperty("id").GetInt64()}"), HttpStatusCode.OK);

        var body = await ApiClient.ExpectAsync(await other.GetAsync("jobs"), HttpStatusCode.Unauthorized);
        Assert.Equal("unauthorized", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task RevokingAnotherAccountsKey_Is404()
    {
        var alice = await Host.NewAccountAsync();
        var bob = await Host.NewAccountAsync();
        var created = await ApiClient.ExpectAsync(await bob.PostAsync("keys", new { name = "bob" }), HttpStatusCode.Created);
        await ApiClient.ExpectAsync(await alice.DeleteAsync($"keys/{created.GetProperty("id").GetInt64()}"), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await Host.WithKey(created.GetProperty("key").GetString()!).GetAsync("jobs"), HttpStatusCode.OK);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer nope")]
    [InlineData("Bearer vk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    [InlineData("Basic dXNlcjpwYXNz")]
    public async Task MissingOrBadKey_Is401InTheSpecShape(string? authorization)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "jobs");
        if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);
        var response = await Host.Http.SendAsync(request);
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.Unauthorized);
        Assert.Equal("unauthorized", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Health_ReportsDatabaseReady()
    {
        var body = await ApiClient.ExpectAsync(await Host.Http.GetAsync("health"), HttpStatusCode.OK);
        Assert.Equal("ok", body.GetProperty("status").GetString());
        Assert.Equal("ok", body.GetProperty("database").GetString());
    }

    [Fact]
    public async Task UnknownRoute_Is404InTheSpecShape()
    {
        var body = await ApiClient.ExpectAsync(await Host.Http.GetAsync("nothing-here"), HttpStatusCode.NotFound);
        Assert.Equal("not_found", body.GetProperty("error").GetString());
    }
}

public class SignUpSwitchedOffTests
{
    [Fact]
    public async Task SignUp_CanBeSwitchedOff()
    {
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Accounts:OpenSignup"] = "false" });
        var body = await ApiClient.ExpectAsync(await host.Anonymous().PostAsync("accounts", new { name = "x" }), HttpStatusCode.Forbidden);
        Assert.Equal("signup_disabled", body.GetProperty("error").GetString());
    }
}
