using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Contract;

/// <summary>
/// One full scenario through Stoplight Prism's validating proxy (<c>prism proxy grid-api.openapi.yaml … --errors</c>):
/// any response that does not match the spec comes back as a 500 with an <c>sl-violations</c> header.
/// </summary>
public sealed class PrismContractTests : IAsyncLifetime
{
    private GridHost _host = null!;
    private PrismProxy _prism = null!;

    public async Task InitializeAsync()
    {
        _host = await GridHost.StartAsync();
        _prism = await PrismProxy.StartAsync(PrismProxy.Spec("grid-api.openapi.yaml"), new Uri(_host.BaseAddress, "/api/v1"));
    }

    public async Task DisposeAsync()
    {
        await _prism.DisposeAsync();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task AFullScenario_ConformsToTheSpec()
    {
        var (_, key) = await _host.Anonymous().SignUpAsync("prism");
        var model = ApiClient.Unique() + ":8b";
        var family = model.Split(':')[0];

        var blob = await CallAsync(HttpMethod.Post, "blobs", key, new { blob_type = "image" }, HttpStatusCode.Created);
        var blobId = blob.GetProperty("blob_id").GetInt64();
        using (var upload = new ByteArrayContent([0x89, 0x50, 0x4e, 0x47]))
        {
            // The bytes go straight to the store, not through the API.
            Assert.True((await _host.Http.PutAsync(blob.GetProperty("upload_url").GetString(), upload)).IsSuccessStatusCode);
        }
        await CallAsync(HttpMethod.Post, $"blobs/{blobId}/confirm", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Post, "blobs/999999999/confirm", key, null, HttpStatusCode.NotFound);
        await CallAsync(HttpMethod.Post, "blobs", "vk_live_not_a_real_key_at_all_0000000000000000", new { blob_type = "document" }, HttpStatusCode.Unauthorized);

        var job = await CallAsync(HttpMethod.Post, "jobs", key, new { model, model_match = "exact", prompt = "Explain.", tag = "contract", webhook_url = "https://example.com/hook", timeout_seconds = 120, blob_ids = new[] { blobId } }, HttpStatusCode.Created);
        var id = job.GetProperty("job_id").GetInt64();
        await CallAsync(HttpMethod.Post, "jobs", key, new { model_match = "any", prompt = "Haiku.", priority = 3 }, HttpStatusCode.Created);
        await CallAsync(HttpMethod.Get, "jobs", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "jobs?status=pending&tag=contract&offset=0", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, $"jobs?model={model}&from=2020-01-01T00:00:00Z&to=2999-01-01T00:00:00Z", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, $"jobs/{id}", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "jobs/999999999", key, null, HttpStatusCode.NotFound);
        await CallAsync(HttpMethod.Get, "jobs", "vk_live_not_a_real_key_at_all_0000000000000000", null, HttpStatusCode.Unauthorized);
        await CallAsync(HttpMethod.Patch, $"jobs/{id}/priority", key, new { priority = 5 }, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Patch, $"jobs/{id}/priority", key, new { priority = 0 }, HttpStatusCode.UnprocessableEntity);
        await CallAsync(HttpMethod.Post, $"jobs/{id}/retry", key, null, HttpStatusCode.UnprocessableEntity);

        var cancelMe = (await CallAsync(HttpMethod.Post, "jobs", key, new { model, prompt = "Never mind." }, HttpStatusCode.Created)).GetProperty("job_id").GetInt64();
        await CallAsync(HttpMethod.Delete, $"jobs/{cancelMe}", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Delete, $"jobs/{cancelMe}", key, null, HttpStatusCode.UnprocessableEntity);

        await CallAsync(HttpMethod.Post, "worker/register", key, new
        {
            name = "contract-box", agent_version = "1.0.0", platform = "linux/amd64", catch_all = false,
            models = new object[] { new { name = model, serves_family = true }, new { name = "mistral:7b", serves_family = false } },
        }, HttpStatusCode.Created);
        await CallAsync(HttpMethod.Patch, "worker/heartbeat", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Patch, "worker/models", key, new { models = new[] { new { name = model, serves_family = true } } }, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "models", key, null, HttpStatusCode.OK);

        var assignment = await CallAsync(HttpMethod.Get, $"worker/jobs/next?models[]={model}&families[]={family}&catch_all=false", key, null, HttpStatusCode.OK);
        Assert.Equal(id, assignment.GetProperty("job_id").GetInt64());
        Assert.Equal(blobId, assignment.GetProperty("blobs")[0].GetProperty("id").GetInt64());
        await CallAsync(HttpMethod.Post, $"worker/jobs/{id}/result", key, new { output = "early", output_tokens = 1, duration_ms = 1 }, HttpStatusCode.UnprocessableEntity);
        await CallAsync(HttpMethod.Patch, $"worker/jobs/{id}/start", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Patch, $"worker/jobs/{id}/start", key, null, HttpStatusCode.UnprocessableEntity);
        await CallAsync(HttpMethod.Post, $"worker/jobs/{id}/result", key, new { output = "Done.", input_tokens = 4, output_tokens = 2, duration_ms = 31, model_used = model }, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Post, $"worker/jobs/{id}/result", key, new { output = "Again.", output_tokens = 2, duration_ms = 31 }, HttpStatusCode.UnprocessableEntity);
        var completed = await CallAsync(HttpMethod.Get, $"jobs/{id}", key, null, HttpStatusCode.OK);
        Assert.Equal("completed", completed.GetProperty("status").GetString());

        await CallAsync(HttpMethod.Get, "usage", key, null, HttpStatusCode.OK);
        var weekly = await CallAsync(HttpMethod.Get, "usage?period=weekly&tag=contract", key, null, HttpStatusCode.OK);
        Assert.Equal(6, weekly.GetProperty("tokens_used").GetInt64());
        await CallAsync(HttpMethod.Get, "usage?period=monthly", key, null, HttpStatusCode.OK);
        var credits = await CallAsync(HttpMethod.Get, "worker/credits", key, null, HttpStatusCode.OK);
        Assert.Equal(0.002m, credits.GetProperty("balance").GetDecimal());
        await CallAsync(HttpMethod.Post, "worker/payout_request", key, null, HttpStatusCode.Created);
        await CallAsync(HttpMethod.Post, "worker/payout_request", key, null, HttpStatusCode.UnprocessableEntity);

        var any = await CallAsync(HttpMethod.Get, "worker/jobs/next?catch_all=true", key, null, HttpStatusCode.OK);
        var anyId = any.GetProperty("job_id").GetInt64();
        await CallAsync(HttpMethod.Post, $"worker/jobs/{anyId}/fail", key, new { error = "Ollama returned empty response" }, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Post, $"worker/jobs/{anyId}/fail", key, new { error = "again" }, HttpStatusCode.NotFound);
        await CallAsync(HttpMethod.Patch, "worker/jobs/999999999/start", key, null, HttpStatusCode.NotFound);
        await CallAsync(HttpMethod.Post, $"jobs/{anyId}/retry", key, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Delete, "jobs/cancel_all", key, null, HttpStatusCode.OK);

        _prism.AssertNoViolations();
    }

    private Task<JsonElement> CallAsync(HttpMethod method, string path, string key, object? body, HttpStatusCode expected) =>
        _prism.CallAsync(method, path, request => request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key), body, expected);
}
