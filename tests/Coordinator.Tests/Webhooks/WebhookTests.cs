using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Webhooks;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Webhooks;

/// <summary>Signed, durable, retried webhooks against a real receiver on loopback (which the test allows explicitly).</summary>
public sealed class WebhookTests : IAsyncLifetime
{
    private readonly ManualTimeProvider _clock = new();
    private WebhookReceiver _receiver = null!;
    private GridHost _host = null!;

    private static readonly Dictionary<string, string?> AllowLoopback = new()
    {
        ["Webhooks:AllowPrivateNetworks"] = "true",
        ["Webhooks:RunSender"] = "false",
    };

    public async Task InitializeAsync()
    {
        _receiver = await WebhookReceiver.StartAsync();
        _host = await GridHost.StartAsync(time: _clock, settings: AllowLoopback);
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _receiver.DisposeAsync();
    }

    private Task<WebhookPass> SendDueAsync(GridHost? host = null) => (host ?? _host).Get<WebhookSender>().RunOnceAsync();

    private async Task<(ApiClient Client, long JobId)> CompletedJobAsync()
    {
        var client = await _host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(new { webhook_url = _receiver.Url.ToString(), tag = "hooked" }, start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "done", output_tokens = 3, duration_ms = 9 }), HttpStatusCode.OK);
        return (client, id);
    }

    private static async Task<List<JsonElement>> DeliveriesAsync(ApiClient client, long jobId) =>
        (await ApiClient.ExpectAsync(await client.GetAsync($"webhooks/deliveries?job_id={jobId}"), HttpStatusCode.OK)).EnumerateArray().ToList();

    [Fact]
    public async Task ACompletedJob_IsPostedAsTheJobObject_SignedWithTheSubmittingKey()
    {
        var (client, id) = await CompletedJobAsync();
        var pending = Assert.Single(await DeliveriesAsync(client, id));
        Assert.Equal("pending", pending.GetProperty("status").GetString());

        Assert.Equal(1, (await SendDueAsync()).Delivered);
        var received = Assert.Single(_receiver.Requests, r => JsonDocument.Parse(r.Body).RootElement.GetProperty("job_id").GetInt64() == id);
        var expected = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(client.Key), Encoding.UTF8.GetBytes(received.Body)));
        Assert.Equal(expected, received.Signature);
        Assert.Equal(pending.GetProperty("id").GetInt64().ToString(), received.Delivery);
        Assert.Equal("job.completed", received.Event);
        Assert.StartsWith("application/json", received.ContentType);

        // The body is the job as GET /jobs/{id} shows it, but for receipt_url: a webhook has no request whose host would
        // give the AITBC port's address, so without Aitbc:PublicBaseUrl it carries the receipt's id alone.
        var job = System.Text.Json.Nodes.JsonNode.Parse((await client.GetJobAsync(id)).GetRawText())!.AsObject();
        Assert.NotNull(job["receipt_url"]);
        job.Remove("receipt_url");
        Assert.Equal(job.ToJsonString(), JsonDocument.Parse(received.Body).RootElement.GetRawText());
        Assert.StartsWith("rcpt_", JsonDocument.Parse(received.Body).RootElement.GetProperty("receipt_id").GetString(), StringComparison.Ordinal);
        Assert.Equal("delivered", Assert.Single(await DeliveriesAsync(client, id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task AReceiverThatFailsTwice_GetsTheSameDeliveryAgain_UntilItAccepts()
    {
        _receiver.Answer(500, 503);
        var (client, id) = await CompletedJobAsync();

        Assert.Equal(1, (await SendDueAsync()).Retrying);
        Assert.Equal(0, (await SendDueAsync()).Retrying); // not due yet: backoff
        var first = Assert.Single(await DeliveriesAsync(client, id));
        Assert.Equal(1, first.GetProperty("attempts").GetInt32());
        Assert.Equal(500, first.GetProperty("last_status_code").GetInt32());

        _clock.Advance(TimeSpan.FromSeconds(16)); // first retry within 10 s ± 50 %
        Assert.Equal(1, (await SendDueAsync()).Retrying);
        _clock.Advance(TimeSpan.FromSeconds(31)); // second within 20 s ± 50 %
        Assert.Equal(1, (await SendDueAsync()).Delivered);

        var attempts = _receiver.Requests.Where(r => JsonDocument.Parse(r.Body).RootElement.GetProperty("job_id").GetInt64() == id).ToList();
        Assert.Equal(3, attempts.Count);
        Assert.Single(attempts.Select(a => a.Delivery).Distinct());
        var delivered = Assert.Single(await DeliveriesAsync(client, id));
        Assert.Equal("delivered", delivered.GetProperty("status").GetString());
        Assert.Equal(3, delivered.GetProperty("attempts").GetInt32());
    }

    [Fact]
    public async Task ADeliveryThatNeverSucceeds_StopsAfterADay_AndIsMarkedFailed()
    {
        _receiver.Answer(Enumerable.Repeat(500, 200).ToArray());
        var (client, id) = await CompletedJobAsync();
        var rounds = 0;
        while ((await DeliveriesAsync(client, id))[0].GetProperty("status").GetString() == "pending")
        {
            Assert.True(++rounds < 60, "still retrying after 60 rounds");
            await SendDueAsync();
            _clock.Advance(TimeSpan.FromMinutes(91)); // past the longest backoff (1 h + 50 %)
        }
        var failed = (await DeliveriesAsync(client, id))[0];
        Assert.Equal("failed", failed.GetProperty("status").GetString());
        Assert.True(rounds > 10, $"gave up after only {rounds} rounds");
        while (_receiver.Requests.TryDequeue(out _)) { }
        _receiver.Answer([]); // later deliveries of other tests answer 200 again
    }

    [Fact]
    public async Task CancelledJobs_AreDeliveredToo()
    {
        var client = await _host.NewAccountAsync();
        var id = await client.SubmitAsync(new { prompt = "p", webhook_url = _receiver.Url.ToString() });
        await client.DeleteAsync($"jobs/{id}");
        await SendDueAsync();
        var received = Assert.Single(_receiver.Requests, r => JsonDocument.Parse(r.Body).RootElement.GetProperty("job_id").GetInt64() == id);
        Assert.Equal("job.cancelled", received.Event);
        Assert.Equal("cancelled", JsonDocument.Parse(received.Body).RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task TheOutboxSurvivesTheNode_AnotherNodeSendsIt()
    {
        var (client, id) = await CompletedJobAsync();
        // The node that ended the job never sends; a second node on the same database does.
        await using var other = await GridHost.StartAsync(_host.ConnectionString, _clock, AllowLoopback);
        Assert.True((await SendDueAsync(other)).Delivered >= 1);
        Assert.Contains(_receiver.Requests, r => JsonDocument.Parse(r.Body).RootElement.GetProperty("job_id").GetInt64() == id);
        Assert.Equal("delivered", Assert.Single(await DeliveriesAsync(client, id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task AnotherAccountsDeliveries_AreNotListed()
    {
        var (_, id) = await CompletedJobAsync();
        var stranger = await _host.NewAccountAsync();
        Assert.Empty(await DeliveriesAsync(stranger, id));
        await ApiClient.ExpectAsync(await stranger.GetAsync("webhooks/deliveries?job_id=x"), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task GenerationParams_AreStored_Returned_AndPassedToTheWorker()
    {
        var client = await _host.NewAccountAsync();
        var parameters = new { max_tokens = 256, temperature = 0.7, top_p = 0.9, stop = new[] { "\n\n", "END" }, seed = 42 };
        var (worker, id, model) = await client.SubmitAndClaimAsync(new { @params = parameters });
        _ = worker;
        var job = await client.GetJobAsync(id);
        Assert.Equal(256, job.GetProperty("params").GetProperty("max_tokens").GetInt32());
        Assert.Equal(0.7, job.GetProperty("params").GetProperty("temperature").GetDouble());
        Assert.Equal(["\n\n", "END"], job.GetProperty("params").GetProperty("stop").EnumerateArray().Select(s => s.GetString()));

        var second = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p", @params = new { seed = 7 } });
        var (other, _) = await client.NewWorkerAsync("second-" + model, model);
        var assignment = (await other.PollAsync($"models[]={model}"))!.Value;
        Assert.Equal(second, assignment.GetProperty("job_id").GetInt64());
        Assert.Equal(7, assignment.GetProperty("params").GetProperty("seed").GetInt32());
        Assert.False(assignment.GetProperty("params").TryGetProperty("temperature", out _));
    }

    [Theory]
    [InlineData("""{"max_tokens":0}""", "params.max_tokens must be between 1 and 32768")]
    [InlineData("""{"max_tokens":40000}""", "params.max_tokens must be between 1 and 32768")]
    [InlineData("""{"temperature":2.5}""", "params.temperature must be between 0 and 2")]
    [InlineData("""{"top_p":-0.1}""", "params.top_p must be between 0 and 1")]
    [InlineData("""{"stop":"END"}""", "params.stop must be an array")]
    [InlineData("""{"stop":[1]}""", "params.stop must be non-empty strings of at most 200 characters")]
    [InlineData("""{"seed":1.5}""", "params.seed must be an integer")]
    [InlineData("""{"temprature":1}""", "params.temprature is not a known parameter (known: max_tokens, temperature, top_p, stop, seed)")]
    [InlineData("""[1]""", "params must be an object")]
    public async Task OutOfRangeParams_Are422(string parameters, string expected)
    {
        var client = await _host.NewAccountAsync();
        var body = await ApiClient.ExpectAsync(await client.SendRawAsync(HttpMethod.Post, "jobs", $$"""{"prompt":"p","params":{{parameters}}}"""), HttpStatusCode.UnprocessableEntity);
        Assert.Contains(expected, body.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));
    }
}

/// <summary>The SSRF guard, with the default configuration (no private networks allowed).</summary>
public sealed class WebhookGuardTests : IAsyncLifetime
{
    private GridHost _host = null!;

    public async Task InitializeAsync() => _host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Webhooks:RunSender"] = "false" });

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Theory]
    [InlineData("http://127.0.0.1:8080/hook")]
    [InlineData("http://localhost/hook")]
    [InlineData("http://169.254.169.254/latest/meta-data/")]
    [InlineData("http://10.0.0.7/hook")]
    [InlineData("http://172.20.1.1/hook")]
    [InlineData("http://192.168.1.10/hook")]
    [InlineData("http://[::1]/hook")]
    [InlineData("http://[fd00::1]/hook")]
    [InlineData("http://[fe80::1]/hook")]
    [InlineData("http://[::ffff:127.0.0.1]/hook")]
    [InlineData("http://0.0.0.0/hook")]
    public async Task PrivateTargets_AreRefusedAtSubmit(string url)
    {
        var client = await _host.NewAccountAsync();
        var body = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", webhook_url = url }), HttpStatusCode.UnprocessableEntity);
        Assert.StartsWith("webhook_url is not allowed", body.GetProperty("errors")[0].GetString());
        Assert.Empty((await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task PublicTargets_AreAccepted()
    {
        var client = await _host.NewAccountAsync();
        await client.SubmitAsync(new { prompt = "p", webhook_url = "https://93.184.215.14/hook" });
    }

    [Fact]
    public async Task AnAllowedRange_IsAccepted()
    {
        await using var host = await GridHost.StartAsync(_host.ConnectionString, settings: new Dictionary<string, string?>
        {
            ["Webhooks:RunSender"] = "false",
            ["Webhooks:AllowedNetworks:0"] = "10.20.0.0/16",
        });
        var client = await host.NewAccountAsync();
        await client.SubmitAsync(new { prompt = "p", webhook_url = "http://10.20.3.4/hook" });
        await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", webhook_url = "http://10.21.3.4/hook" }), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task AtSendTime_APrivateTargetIsRefusedAgain_AfterResolution()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        // Accepted by a node that allows loopback (as a DNS answer that later changes would be) …
        await using var permissive = await GridHost.StartAsync(_host.ConnectionString, settings: new Dictionary<string, string?>
        {
            ["Webhooks:RunSender"] = "false",
            ["Webhooks:AllowPrivateNetworks"] = "true",
        });
        var client = await permissive.NewAccountAsync();
        var id = await client.SubmitAsync(new { prompt = "p", webhook_url = receiver.Url.ToString() });
        await client.DeleteAsync($"jobs/{id}");

        // … and sent by a node that does not: the connection is refused, the receiver sees nothing.
        var pass = await _host.Get<WebhookSender>().RunOnceAsync();
        Assert.True(pass.Retrying >= 1);
        Assert.Empty(receiver.Requests);
        var delivery = (await ApiClient.ExpectAsync(await client.GetAsync($"webhooks/deliveries?job_id={id}"), HttpStatusCode.OK))[0];
        Assert.Contains("refused to connect", delivery.GetProperty("last_error").GetString());
    }
}
