using System.Net;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Api;

public class WorkerProtocolTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task Register_BindsTheKey_AndReRegisteringUpdatesInPlace()
    {
        var client = await Host.NewAccountAsync();
        var created = await ApiClient.ExpectAsync(await client.PostAsync("keys", new { name = "box" }), HttpStatusCode.Created);
        var key = created.GetProperty("key").GetString()!;
        var worker = Host.WithKey(key);

        // Before registering, the key is a plain key: /worker/* is 401.
        await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.Unauthorized);

        var first = await ApiClient.ExpectAsync(await worker.PostAsync("worker/register", new { name = "box", models = new[] { new { name = "llama3:8b" } } }), HttpStatusCode.Created);
        Assert.Equal(key, first.GetProperty("worker_token").GetString());
        var again = await ApiClient.ExpectAsync(await worker.PostAsync("worker/register", new { name = "box", models = new[] { new { name = "mistral:7b" } } }), HttpStatusCode.Created);
        Assert.Equal(first.GetProperty("worker_id").GetInt64(), again.GetProperty("worker_id").GetInt64());

        var heartbeat = await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK);
        Assert.Equal("ok", heartbeat.GetProperty("status").GetString());
        var keys = await ApiClient.ExpectAsync(await client.GetAsync("keys"), HttpStatusCode.OK);
        Assert.Contains(keys.EnumerateArray(), k => k.GetProperty("worker_id").ValueKind == System.Text.Json.JsonValueKind.Number);
    }

    [Fact]
    public async Task Register_RequiresModels()
    {
        var client = await Host.NewAccountAsync();
        var body = await ApiClient.ExpectAsync(await client.PostAsync("worker/register", new { name = "x" }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("models is required", body.GetProperty("message").GetString());
        body = await ApiClient.ExpectAsync(await client.PostAsync("worker/register", new { models = new[] { new { name = "bad name" } } }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("models[0].name", body.GetProperty("message").GetString());
    }

    [Fact]
    public async Task UpdateModels_ReplacesTheListAndSyncsTheRegistry()
    {
        var client = await Host.NewAccountAsync();
        var (a, b) = (ApiClient.Unique("fam") + ":7b", ApiClient.Unique("fam") + ":13b");
        var (worker, _) = await client.NewWorkerAsync("w", a);
        var body = await ApiClient.ExpectAsync(await worker.PatchAsync("worker/models", new { models = new[] { new { name = b, serves_family = true } } }), HttpStatusCode.OK);
        Assert.Equal("updated", body.GetProperty("status").GetString());
        Assert.Equal(1, body.GetProperty("model_count").GetInt32());

        var models = (await ApiClient.ExpectAsync(await client.GetAsync("models"), HttpStatusCode.OK)).EnumerateArray().ToList();
        Assert.DoesNotContain(models, m => m.GetProperty("name").GetString() == a);
        var entry = Assert.Single(models, m => m.GetProperty("name").GetString() == b);
        Assert.Equal(b.Split(':')[0], entry.GetProperty("family").GetString());
        Assert.Equal(1, entry.GetProperty("worker_count").GetInt32());
    }

    [Fact]
    public async Task Models_CountWorkersPerModelAndFamily_MostServedFirst()
    {
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique("fam");
        await client.NewWorkerAsync("w1", $"{family}:8b", $"{family}:70b");
        await client.NewWorkerAsync("w2", $"{family}:8b");

        var models = (await ApiClient.ExpectAsync(await client.GetAsync("models"), HttpStatusCode.OK)).EnumerateArray()
            .Where(m => m.GetProperty("family").GetString() == family).ToList();
        Assert.Equal([$"{family}:8b", $"{family}:70b"], models.Select(m => m.GetProperty("name").GetString()));
        Assert.Equal([2, 1], models.Select(m => m.GetProperty("worker_count").GetInt32()));
        Assert.All(models, m => Assert.Equal(2, m.GetProperty("family_worker_count").GetInt32()));
        Assert.Equal(ModelDisplay(family, "8B"), models[0].GetProperty("display_name").GetString());
    }

    private static string ModelDisplay(string family, string size) => Coordinator.Grains.ModelNames.DisplayNameOf($"{family}:{size.ToLowerInvariant()}");

    [Fact]
    public async Task FullLifecycle_ClaimStartResult()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "Say hi" });
        var (worker, workerId) = await client.NewWorkerAsync("w", model);

        var assignment = (await worker.PollAsync($"models[]={model}"))!.Value;
        Assert.Equal(id, assignment.GetProperty("job_id").GetInt64());
        Assert.Equal("Say hi", assignment.GetProperty("prompt").GetString());
        Assert.Equal(model, assignment.GetProperty("model").GetString());
        Assert.Equal(model.Split(':')[0], assignment.GetProperty("model_family").GetString());
        Assert.Equal("exact", assignment.GetProperty("model_match").GetString());
        Assert.Empty(assignment.GetProperty("blobs").EnumerateArray());
        Assert.Equal("claimed", (await client.GetJobAsync(id)).GetProperty("status").GetString());

        Assert.Equal("running", (await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK)).GetProperty("status").GetString());
        var accepted = await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output = "hi!", input_tokens = 3, output_tokens = 2, duration_ms = 120, model_used = model }), HttpStatusCode.OK);
        Assert.Equal("accepted", accepted.GetProperty("status").GetString());

        var job = await client.GetJobAsync(id);
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal("hi!", job.GetProperty("output").GetString());
        Assert.Equal(3, job.GetProperty("input_tokens").GetInt32());
        Assert.Equal(2, job.GetProperty("output_tokens").GetInt32());
        Assert.Equal(120, job.GetProperty("duration_ms").GetInt32());
        Assert.Equal(model, job.GetProperty("model_used").GetString());
        Assert.NotEqual(System.Text.Json.JsonValueKind.Null, job.GetProperty("completed_at").ValueKind);
        Assert.True(workerId > 0);
    }

    [Fact]
    public async Task DuplicateOrLateResult_IsRefused_AndChangesNothing()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync();

        // Result before start: the job is claimed, not running.
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "x", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.UnprocessableEntity);
        await worker.PatchAsync($"worker/jobs/{id}/start");
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.UnprocessableEntity);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "first", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.OK);
        var second = await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "second", output_tokens = 9, duration_ms = 9 }), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("invalid_state", second.GetProperty("error").GetString());
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/fail", new { error = "late" }), HttpStatusCode.NotFound);

        var job = await client.GetJobAsync(id);
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal("first", job.GetProperty("output").GetString());
    }

    [Fact]
    public async Task AWorker_TouchesOnlyJobsItHolds()
    {
        var client = await Host.NewAccountAsync();
        var (_, id, model) = await client.SubmitAndClaimAsync();
        var (other, _) = await client.NewWorkerAsync("other", model);

        await ApiClient.ExpectAsync(await other.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await other.PostAsync($"worker/jobs/{id}/result", new { output = "x", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await other.PostAsync($"worker/jobs/{id}/fail", new { error = "x" }), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await other.PatchAsync("worker/jobs/999999999/start"), HttpStatusCode.NotFound);
        Assert.Equal("claimed", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Result_RefusesBadBodies()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);

        var body = await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "x" }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("output_tokens is required", body.GetProperty("message").GetString());
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "x", output_tokens = -1, duration_ms = 1 }), HttpStatusCode.UnprocessableEntity);
        await ApiClient.ExpectAsync(await worker.SendRawAsync(HttpMethod.Post, $"worker/jobs/{id}/result", "nope"), HttpStatusCode.UnprocessableEntity);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/fail", new { }), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("running", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Poll_RefusesBadCapabilities()
    {
        var client = await Host.NewAccountAsync();
        var (worker, _) = await client.NewWorkerAsync("w", "x:1");
        await ApiClient.ExpectAsync(await worker.GetAsync("worker/jobs/next?catch_all=maybe"), HttpStatusCode.UnprocessableEntity);
        await ApiClient.ExpectAsync(await worker.GetAsync("worker/jobs/next?models[]=a%20b"), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task Poll_WithNoDeclaredCapabilities_ServesTheRegisteredModels()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var (worker, _) = await client.NewWorkerAsync("w", model);
        Assert.Equal(id, (await worker.PollAsync())!.Value.GetProperty("job_id").GetInt64());
    }
}
