using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Api;

public class JobsApiTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task Submit_AnswersTheJobWithDefaults()
    {
        var client = await Host.NewAccountAsync();
        var response = await client.PostAsync("jobs", new { model = "llama3:8b", prompt = "Explain entanglement.", tag = "proj" });
        var job = await ApiClient.ExpectAsync(response, HttpStatusCode.Created);

        Assert.Equal("pending", job.GetProperty("status").GetString());
        Assert.Equal("llama3:8b", job.GetProperty("model").GetString());
        Assert.Equal("family", job.GetProperty("model_match").GetString()); // the spec's default
        Assert.Equal(600, job.GetProperty("timeout_seconds").GetInt32());
        Assert.Equal(0, job.GetProperty("priority").GetInt32());
        Assert.Equal("proj", job.GetProperty("tag").GetString());
        Assert.Equal(JsonValueKind.Null, job.GetProperty("output").ValueKind);
        Assert.Equal(JsonValueKind.Null, job.GetProperty("completed_at").ValueKind);
        Assert.EndsWith("Z", job.GetProperty("created_at").GetString());
        Assert.Equal($"/api/v1/jobs/{job.GetProperty("job_id").GetInt64()}", response.Headers.Location!.ToString());
    }

    [Fact]
    public async Task Submit_WithoutModel_IsAnAnyJob()
    {
        var client = await Host.NewAccountAsync();
        var job = await client.GetJobAsync(await client.SubmitAsync(new { prompt = "haiku" }));
        Assert.Equal("any", job.GetProperty("model_match").GetString());
        Assert.Equal(JsonValueKind.Null, job.GetProperty("model").ValueKind);
    }

    [Fact]
    public async Task Submit_NamesEveryBadField()
    {
        var client = await Host.NewAccountAsync();
        var response = await client.PostAsync("jobs", new { model_match = "exact", timeout_seconds = -5, webhook_url = "not a url", priority = "high" });
        var errors = (await ApiClient.ExpectAsync(response, HttpStatusCode.UnprocessableEntity)).GetProperty("errors").EnumerateArray().Select(e => e.GetString()).ToList();

        Assert.Contains("prompt is required", errors);
        Assert.Contains("model is required when model_match is exact", errors);
        Assert.Contains(errors, e => e!.StartsWith("timeout_seconds must be between 1", StringComparison.Ordinal));
        Assert.Contains("webhook_url must be an absolute http or https URL", errors);
        Assert.Contains("priority must be an integer", errors);
    }

    [Theory]
    [InlineData("""{"prompt":"x","model_match":"nearest","model":"a:1"}""", "model_match must be one of exact, family, any")]
    [InlineData("""{"prompt":"x","model_match":"family"}""", "model is required when model_match is family")]
    [InlineData("""{"prompt":""}""", "prompt is required")]
    [InlineData("""{"prompt":42}""", "prompt must be a string")]
    [InlineData("""{"prompt":"x","webhook_url":"ftp://example.com/x"}""", "webhook_url must be an absolute http or https URL")]
    [InlineData("""[1,2]""", "the request body must be a JSON object")]
    [InlineData("""{"prompt":"a\u0000b"}""", "prompt must not contain NUL (\\u0000) characters")]
    public async Task Submit_RefusesBadInputWith422(string json, string expected)
    {
        var client = await Host.NewAccountAsync();
        var response = await client.SendRawAsync(HttpMethod.Post, "jobs", json);
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.UnprocessableEntity);
        Assert.Contains(expected, body.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));
        Assert.Empty((await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task Submit_RefusesMalformedJson()
    {
        var client = await Host.NewAccountAsync();
        var body = await ApiClient.ExpectAsync(await client.SendRawAsync(HttpMethod.Post, "jobs", "{\"prompt\": "), HttpStatusCode.UnprocessableEntity);
        Assert.StartsWith("the request body is not valid JSON", body.GetProperty("errors")[0].GetString());
    }

    [Fact]
    public async Task Submit_RefusesAPromptOverTheConfiguredSize()
    {
        var client = await Host.NewAccountAsync();
        var response = await client.PostAsync("jobs", new { prompt = new string('x', 1024 * 1024 + 1) });
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.UnprocessableEntity);
        Assert.Contains("prompt is larger than the limit of 1048576 bytes", body.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task List_IsNewestFirst_WithFiltersAndPaging()
    {
        var client = await Host.NewAccountAsync();
        var ids = new List<long>();
        for (var i = 0; i < 5; i++) ids.Add(await client.SubmitAsync(new { model = i % 2 == 0 ? "even:1b" : "odd:1b", prompt = "p", tag = i < 3 ? "first" : "second" }));
        await client.DeleteAsync($"jobs/{ids[0]}");

        async Task<List<long>> ListAsync(string query) =>
            (await ApiClient.ExpectAsync(await client.GetAsync("jobs" + query), HttpStatusCode.OK)).EnumerateArray().Select(j => j.GetProperty("job_id").GetInt64()).ToList();

        Assert.Equal(ids.AsEnumerable().Reverse(), await ListAsync(""));
        Assert.Equal([ids[4], ids[2], ids[0]], await ListAsync("?model=even:1b"));
        Assert.Equal([ids[4], ids[3]], await ListAsync("?tag=second"));
        Assert.Equal([ids[0]], await ListAsync("?status=cancelled"));
        Assert.Equal([ids[3], ids[2]], await ListAsync("?limit=2&offset=1"));
        Assert.Empty(await ListAsync("?from=2999-01-01T00:00:00Z"));
        Assert.Equal(5, (await ListAsync("?to=2999-01-01T00:00:00Z")).Count);
    }

    [Theory]
    [InlineData("?status=done")]
    [InlineData("?limit=201")]
    [InlineData("?limit=0")]
    [InlineData("?offset=-1")]
    [InlineData("?from=yesterday")]
    public async Task List_RefusesBadQueries(string query)
    {
        var client = await Host.NewAccountAsync();
        var body = await ApiClient.ExpectAsync(await client.GetAsync("jobs" + query), HttpStatusCode.UnprocessableEntity);
        Assert.NotEmpty(body.GetProperty("errors").EnumerateArray());
    }

    [Fact]
    public async Task AnotherAccountsJob_Is404Everywhere()
    {
        var alice = await Host.NewAccountAsync();
        var bob = await Host.NewAccountAsync();
        var id = await alice.SubmitAsync(new { prompt = "secret" });

        await ApiClient.ExpectAsync(await bob.GetAsync($"jobs/{id}"), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await bob.DeleteAsync($"jobs/{id}"), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await bob.PatchAsync($"jobs/{id}/priority", new { priority = 5 }), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await bob.PostAsync($"jobs/{id}/retry"), HttpStatusCode.NotFound);
        Assert.Equal(0, (await ApiClient.ExpectAsync(await bob.DeleteAsync("jobs/cancel_all"), HttpStatusCode.OK)).GetProperty("cancelled").GetInt32());
        Assert.Empty((await ApiClient.ExpectAsync(await bob.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
        Assert.Equal("pending", (await alice.GetJobAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Cancel_OnlyPendingJobs()
    {
        var client = await Host.NewAccountAsync();
        var id = await client.SubmitAsync(new { prompt = "p" });
        var body = await ApiClient.ExpectAsync(await client.DeleteAsync($"jobs/{id}"), HttpStatusCode.OK);
        Assert.Equal("cancelled", body.GetProperty("status").GetString());
        Assert.Equal("cancelled", (await client.GetJobAsync(id)).GetProperty("status").GetString());

        var again = await ApiClient.ExpectAsync(await client.DeleteAsync($"jobs/{id}"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("invalid_state", again.GetProperty("error").GetString());
        await ApiClient.ExpectAsync(await client.DeleteAsync("jobs/999999999"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task CancelAll_CancelsOnlyPendingJobs_AndCountsThem()
    {
        var client = await Host.NewAccountAsync();
        var (_, running, model) = await client.SubmitAndClaimAsync();
        for (var i = 0; i < 3; i++) await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });

        var body = await ApiClient.ExpectAsync(await client.DeleteAsync("jobs/cancel_all"), HttpStatusCode.OK);
        Assert.Equal(3, body.GetProperty("cancelled").GetInt32());
        Assert.Equal("claimed", (await client.GetJobAsync(running)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Priority_AppliesASignedDelta_ToPendingJobs()
    {
        var client = await Host.NewAccountAsync();
        var id = await client.SubmitAsync(new { prompt = "p", priority = 5 });
        Assert.Equal(15, (await ApiClient.ExpectAsync(await client.PatchAsync($"jobs/{id}/priority", new { priority = 10 }), HttpStatusCode.OK)).GetProperty("priority").GetInt32());
        Assert.Equal(-5, (await ApiClient.ExpectAsync(await client.PatchAsync($"jobs/{id}/priority", new { priority = -20 }), HttpStatusCode.OK)).GetProperty("priority").GetInt32());
        Assert.Equal(-5, (await client.GetJobAsync(id)).GetProperty("priority").GetInt32());

        await ApiClient.ExpectAsync(await client.PatchAsync($"jobs/{id}/priority", new { priority = 0 }), HttpStatusCode.UnprocessableEntity);
        await ApiClient.ExpectAsync(await client.PatchAsync($"jobs/{id}/priority", new { }), HttpStatusCode.UnprocessableEntity);
        await ApiClient.ExpectAsync(await client.PatchAsync($"jobs/{id}/priority", new { priority = 1.5 }), HttpStatusCode.UnprocessableEntity);
        await client.DeleteAsync($"jobs/{id}");
        var body = await ApiClient.ExpectAsync(await client.PatchAsync($"jobs/{id}/priority", new { priority = 1 }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("cancelled", body.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Retry_PutsAFailedJobBackInPlace()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        await ApiClient.ExpectAsync(await client.PostAsync($"jobs/{id}/retry"), HttpStatusCode.UnprocessableEntity);

        var (worker, _) = await client.NewWorkerAsync("w", model);
        await worker.PollAsync($"models[]={model}");
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/fail", new { error = "GPU on fire" }), HttpStatusCode.OK);
        var failed = await client.GetJobAsync(id);
        Assert.Equal("failed", failed.GetProperty("status").GetString());
        Assert.Equal("GPU on fire", failed.GetProperty("error").GetString());

        var retried = await ApiClient.ExpectAsync(await client.PostAsync($"jobs/{id}/retry"), HttpStatusCode.OK);
        Assert.Equal(id, retried.GetProperty("job_id").GetInt64());
        Assert.Equal("pending", retried.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, retried.GetProperty("error").ValueKind);
        Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
    }
}
