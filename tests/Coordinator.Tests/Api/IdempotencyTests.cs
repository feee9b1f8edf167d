using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Billing;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Api;

/// <summary>
/// <c>Idempotency-Key</c> on <c>POST /jobs</c>: a client whose answer was lost retries with the same key, on any node,
/// and gets the job it already made instead of a second one.
/// </summary>
public class IdempotencyTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private static Task<HttpResponseMessage> PostJobAsync(ApiClient client, object job, string? idempotencyKey) =>
        PostRawAsync(client, JsonSerializer.Serialize(job), idempotencyKey);

    private static async Task<HttpResponseMessage> PostRawAsync(ApiClient client, string json, string? idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "jobs");
        request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", client.Key);
        if (idempotencyKey is not null) request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
        return await client.Http.SendAsync(request);
    }

    private static async Task<JsonElement> CreatedAsync(Task<HttpResponseMessage> post) => await ApiClient.ExpectAsync(await post, HttpStatusCode.Created);

    private static async Task<List<long>> JobIdsAsync(ApiClient client) =>
        (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray().Select(j => j.GetProperty("job_id").GetInt64()).ToList();

    private static string NewKey() => Guid.NewGuid().ToString();

    [Fact]
    public async Task AReplay_AnswersTheFirstJobAsItIsNow_AndMakesNoSecond()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var key = NewKey();
        var job = new { model, model_match = "exact", prompt = "once", tag = "t" };
        var first = await PostJobAsync(client, job, key);
        var created = await ApiClient.ExpectAsync(first, HttpStatusCode.Created);
        var id = created.GetProperty("job_id").GetInt64();
        Assert.Equal("pending", created.GetProperty("status").GetString());
        // The job moves on before the retry arrives.
        var (worker, workerId) = await client.NewWorkerAsync("w", model);
        Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());

        var again = await PostJobAsync(client, job, key);
        var replayed = await ApiClient.ExpectAsync(again, HttpStatusCode.Created);

        Assert.Equal(id, replayed.GetProperty("job_id").GetInt64());
        Assert.Equal("claimed", replayed.GetProperty("status").GetString());
        Assert.Equal(first.Headers.Location, again.Headers.Location);
        Assert.Equal([id], await JobIdsAsync(client));
        await using var connection = await Host.OpenConnectionAsync();
        Assert.Equal(workerId, await connection.QuerySingleAsync<long>("SELECT worker_id FROM jobs WHERE id = @id", new { id }));
    }

    [Fact]
    public async Task TwentyConcurrentRequestsWithOneKey_MakeExactlyOneJob()
    {
        var client = await Host.NewAccountAsync();
        var key = NewKey();
        var job = new { model = ApiClient.Unique(), prompt = "racing" };

        var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(() => CreatedAsync(PostJobAsync(client, job, key)))));

        var ids = answers.Select(a => a.GetProperty("job_id").GetInt64()).Distinct().ToList();
        Assert.Single(ids);
        Assert.Equal(ids, await JobIdsAsync(client));
    }

    [Fact]
    public async Task RequestsWithOneKeyRacingOnTwoNodes_MakeExactlyOneJob()
    {
        await using var nodeA = await GridHost.StartAsync();
        await using var nodeB = await GridHost.StartAsync(nodeA.ConnectionString);
        var onA = await nodeA.NewAccountAsync();
        var onB = nodeB.WithKey(onA.Key);
        var job = new { model = ApiClient.Unique(), prompt = "lost answer" };

        for (var round = 0; round < 3; round++)
        {
            var key = NewKey();
            var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(i =>
                Task.Run(() => CreatedAsync(PostJobAsync(i % 2 == 0 ? onA : onB, job, key)))));
            Assert.Single(answers.Select(a => a.GetProperty("job_id").GetInt64()).Distinct());
        }
        Assert.Equal(3, (await JobIdsAsync(onA)).Count);
    }

    [Fact]
    public async Task AReplay_IsNeverHandedToAnIdlePoll()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var key = NewKey();
        var job = new { model, prompt = "handed once" };
        var (first, _) = await client.NewWorkerAsync("first", model);
        var firstPoll = first.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);
        var handed = await CreatedAsync(PostJobAsync(client, job, key));
        Assert.Equal("claimed", handed.GetProperty("status").GetString());
        Assert.Equal(handed.GetProperty("job_id").GetInt64(), (await firstPoll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());

        var (second, _) = await client.NewWorkerAsync("second", model);
        using var stop = new CancellationTokenSource();
        var secondPoll = second.PollAsync($"models[]={model}", stop.Token);
        await Host.ParkedAsync(model);
        var replayed = await CreatedAsync(PostJobAsync(client, job, key));

        Assert.Equal(handed.GetProperty("job_id").GetInt64(), replayed.GetProperty("job_id").GetInt64());
        // The second poll was at most woken: it claimed nothing, waits again, and only one request was counted.
        await Host.ParkedAsync(model);
        Assert.False(secondPoll.IsCompleted);
        Assert.Single(await JobIdsAsync(client));
        await using var connection = await Host.OpenConnectionAsync();
        var accountId = await connection.QuerySingleAsync<long>("SELECT account_id FROM jobs WHERE id = @id", new { id = handed.GetProperty("job_id").GetInt64() });
        Assert.Equal(1, (await Host.QuotaTodayAsync(accountId)).Requests);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => secondPoll);
    }

    [Fact]
    public async Task TheSameKeyWithAnotherBody_IsRefusedWith422_AndMakesNoJob()
    {
        var client = await Host.NewAccountAsync();
        var key = NewKey();
        var id = (await CreatedAsync(PostJobAsync(client, new { prompt = "first" }, key))).GetProperty("job_id").GetInt64();

        var refused = await ApiClient.ExpectAsync(await PostJobAsync(client, new { prompt = "second" }, key), HttpStatusCode.UnprocessableEntity);

        Assert.Contains(refused.GetProperty("errors").EnumerateArray(), e => e.GetString()!.StartsWith("Idempotency-Key was already used with a different request", StringComparison.Ordinal));
        Assert.Equal([id], await JobIdsAsync(client));
        // The first request still answers its job.
        Assert.Equal(id, (await CreatedAsync(PostJobAsync(client, new { prompt = "first" }, key))).GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task TheSameRequestSerialisedDifferently_IsAReplay()
    {
        var client = await Host.NewAccountAsync();
        var key = NewKey();
        var first = await CreatedAsync(PostRawAsync(client, """{"prompt":"p","model":"llama3:8b","params":{"seed":1,"temperature":0.5}}""", key));

        var again = await CreatedAsync(PostRawAsync(client, """
            { "params": { "temperature": 0.5, "seed": 1 },
              "model": "llama3:8b", "prompt": "p" }
            """, key));

        Assert.Equal(first.GetProperty("job_id").GetInt64(), again.GetProperty("job_id").GetInt64());
        Assert.Single(await JobIdsAsync(client));
    }

    [Fact]
    public async Task AnotherAccountsSameKey_MakesItsOwnJob()
    {
        var alice = await Host.NewAccountAsync();
        var bob = await Host.NewAccountAsync();
        var key = NewKey();
        var job = new { prompt = "same" };

        var ofAlice = (await CreatedAsync(PostJobAsync(alice, job, key))).GetProperty("job_id").GetInt64();
        var ofBob = (await CreatedAsync(PostJobAsync(bob, job, key))).GetProperty("job_id").GetInt64();

        Assert.NotEqual(ofAlice, ofBob);
        Assert.Equal([ofAlice], await JobIdsAsync(alice));
        Assert.Equal([ofBob], await JobIdsAsync(bob));
    }

    [Fact]
    public async Task AKey_AnswersItsJobFor24Hours_ThenMakesANewOne()
    {
        var client = await Host.NewAccountAsync();
        var key = NewKey();
        var job = new { prompt = "daily" };
        var first = (await CreatedAsync(PostJobAsync(client, job, key))).GetProperty("job_id").GetInt64();

        fixture.Clock.Advance(TimeSpan.FromHours(24) - TimeSpan.FromSeconds(1));
        Assert.Equal(first, (await CreatedAsync(PostJobAsync(client, job, key))).GetProperty("job_id").GetInt64());

        fixture.Clock.Advance(TimeSpan.FromSeconds(1));
        var nextDay = new { prompt = "the next day" };
        var second = (await CreatedAsync(PostJobAsync(client, nextDay, key))).GetProperty("job_id").GetInt64();

        Assert.NotEqual(first, second);
        // From now on the key stands for the new job and its request.
        Assert.Equal(second, (await CreatedAsync(PostJobAsync(client, nextDay, key))).GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await PostJobAsync(client, job, key), HttpStatusCode.UnprocessableEntity);
        Assert.Equal([second, first], await JobIdsAsync(client));
    }

    [Theory]
    [InlineData(256, HttpStatusCode.UnprocessableEntity, "Idempotency-Key must be at most 255 characters")]
    [InlineData(0, HttpStatusCode.UnprocessableEntity, "Idempotency-Key must not be empty: send a unique value (a UUID) per job, or no header")]
    [InlineData(255, HttpStatusCode.Created, null)]
    public async Task AKeyOfTheWrongLength_IsRefusedWith422_AndMakesNoJob(int length, HttpStatusCode expected, string? error)
    {
        var client = await Host.NewAccountAsync();

        var body = await ApiClient.ExpectAsync(await PostJobAsync(client, new { prompt = "p" }, new string('k', length)), expected);

        if (error is null)
        {
            Assert.Single(await JobIdsAsync(client));
            return;
        }
        Assert.Equal([error], body.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));
        Assert.Empty(await JobIdsAsync(client));
    }

    [Fact]
    public async Task AKeyOutsidePrintableAscii_OrTwoKeys_AreRefusedWith422()
    {
        var client = await Host.NewAccountAsync();
        var tab = await ApiClient.ExpectAsync(await PostJobAsync(client, new { prompt = "p" }, "a\tb"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal(["Idempotency-Key must consist of printable ASCII characters"], tab.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));

        // HttpClient folds repeated headers into one line, so this request is written by hand.
        var body = """{"prompt":"p"}""";
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(Host.BaseAddress.Host, Host.BaseAddress.Port);
        await using var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"POST /api/v1/jobs HTTP/1.1\r\nHost: {Host.BaseAddress.Authority}\r\nAuthorization: Bearer {client.Key}\r\n" +
            $"Idempotency-Key: {NewKey()}\r\nIdempotency-Key: {NewKey()}\r\nContent-Type: application/json\r\n" +
            $"Content-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var answer = await reader.ReadToEndAsync();

        Assert.StartsWith("HTTP/1.1 422", answer, StringComparison.Ordinal);
        Assert.Contains("""{"errors":["send one Idempotency-Key header, not 2"]}""", answer, StringComparison.Ordinal);
        Assert.Empty(await JobIdsAsync(client));
    }

    [Fact]
    public async Task WithoutTheHeader_TwoIdenticalPostsMakeTwoJobs()
    {
        var client = await Host.NewAccountAsync();
        var job = new { prompt = "twice" };

        var first = (await CreatedAsync(PostJobAsync(client, job, null))).GetProperty("job_id").GetInt64();
        var second = (await CreatedAsync(PostJobAsync(client, job, null))).GetProperty("job_id").GetInt64();

        Assert.NotEqual(first, second);
        Assert.Equal(2, (await JobIdsAsync(client)).Count);
    }

    [Fact]
    public async Task ARetriedBoostedSubmission_IsChargedOnce()
    {
        await using var stripe = await FakeStripe.StartAsync();
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
        {
            ["Billing:SecretKey"] = FakeStripe.SecretKey,
            ["Billing:WebhookSecret"] = "whsec_idempotency",
            ["Billing:ApiBase"] = stripe.BaseAddress.ToString(),
        });
        var (accountId, secret) = await host.Anonymous().SignUpAsync("booster");
        var client = host.WithKey(secret);
        await using (var connection = await host.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("UPDATE accounts SET stripe_customer_id = @customer, stripe_payment_method_id = 'pm_card_visa' WHERE id = @accountId",
                new { customer = "cus_" + accountId, accountId });
        }
        var key = NewKey();
        var job = new { prompt = "urgent", priority_boost = true };

        var first = await CreatedAsync(PostJobAsync(client, job, key));
        var again = await CreatedAsync(PostJobAsync(client, job, key));

        Assert.Equal("charged", first.GetProperty("boost_status").GetString());
        Assert.Equal(first.GetProperty("job_id").GetInt64(), again.GetProperty("job_id").GetInt64());
        Assert.Single(stripe.Requests, r => r.Path == "/v1/payment_intents" && r.Form["customer"] == "cus_" + accountId);
        Assert.Single(await JobIdsAsync(client));
        // Another request under the key is refused before anything is charged.
        await ApiClient.ExpectAsync(await PostJobAsync(client, new { prompt = "other", priority_boost = true }, key), HttpStatusCode.UnprocessableEntity);
        Assert.Single(stripe.Requests, r => r.Path == "/v1/payment_intents" && r.Form["customer"] == "cus_" + accountId);
    }

    [Fact]
    public async Task TheServedOpenApiDocument_ListsTheHeaderOnPostJobs()
    {
        var document = await ApiClient.ExpectAsync(await Host.Anonymous().GetAsync("openapi/v1.json"), HttpStatusCode.OK);

        var parameters = document.GetProperty("paths").GetProperty("/api/v1/jobs").GetProperty("post").GetProperty("parameters").EnumerateArray();
        var header = Assert.Single(parameters, p => p.GetProperty("name").GetString() == "Idempotency-Key");
        Assert.Equal("header", header.GetProperty("in").GetString());
        Assert.Equal(255, header.GetProperty("schema").GetProperty("maxLength").GetInt32());
    }

    [Fact]
    public async Task InOneBatch_AReplayAndAReusedKeyFailOnlyThemselves()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var jobs = Host.Get<JobStore>();
        await using var connection = await Host.OpenConnectionAsync();
        var accountId = await connection.QuerySingleAsync<long>("SELECT account_id FROM jobs WHERE id = @id",
            new { id = await client.SubmitAsync(new { model, prompt = "first" }) });
        var key = NewKey();
        NewJob Job(string prompt, string? idempotencyKey) => new(model, ModelMatch.Exact, prompt, null, 60, null, null)
        {
            Idempotency = idempotencyKey is null ? null : new IdempotencyKey(idempotencyKey, SHA256.HashData(Encoding.UTF8.GetBytes(prompt))),
        };

        // One transaction: the second copy finds the first's uncommitted key; another body is refused without a rollback.
        var outcomes = await jobs.SubmitBatchAsync([
            (accountId, Job("a", key), null), (accountId, Job("a", key), null), (accountId, Job("b", key), null), (accountId, Job("c", null), null)]);
        Assert.Equal(outcomes[0].Value.Row!.Id, outcomes[1].Value.Row!.Id);
        Assert.True(outcomes[2].Value.KeyReused);
        Assert.Null(outcomes[2].Value.Row);
        Assert.NotEqual(outcomes[0].Value.Row!.Id, outcomes[3].Value.Row!.Id);

        // A failing submission rolls the batch back and each goes again alone: the key still makes one job.
        var other = NewKey();
        var retried = await jobs.SubmitBatchAsync([(accountId, Job("d", other), null), (long.MaxValue, Job("nobody's", null), null), (accountId, Job("d", other), null)]);
        Assert.Equal(retried[0].Value.Row!.Id, retried[2].Value.Row!.Id);
        Assert.ThrowsAny<Exception>(() => retried[1].Value);
        Assert.Equal(4, (await JobIdsAsync(client)).Count);
    }
}
