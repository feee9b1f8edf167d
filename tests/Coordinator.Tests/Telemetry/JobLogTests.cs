using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.Tests.Cluster;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Telemetry;

/// <summary>
/// The JSON console log of a real silo process at Debug level (<c>Logging:Json=true</c>) while one job runs its whole
/// course over HTTP: the lines about the job carry its <c>JobId</c> and a <c>TraceId</c>, and no line anywhere carries
/// the job's prompt, its output, or either API key.
/// </summary>
public sealed class JobLogTests
{
    [Fact]
    public async Task JsonLogs_CarryJobIdAndTraceId_OnTheJobsLines_AndNeverTheKeysPromptOrOutput()
    {
        var database = await TestDatabase.CreateAsync();
        await using var silo = await SiloProcess.StartAsync(database, new Dictionary<string, string>
        {
            ["Logging__Json"] = "true",
            ["Logging__LogLevel__Default"] = "Debug",
            ["Logging__LogLevel__Microsoft.AspNetCore"] = "Debug",
            // Orleans' own Debug lines (membership, directory, messaging) are many and about no job; they only slow the console.
            ["Logging__LogLevel__Orleans"] = "Information",
            ["Telemetry__Tracing__Enabled"] = "true",
            ["Telemetry__Tracing__SamplingRatio"] = "1",
        });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var secret = Guid.NewGuid().ToString("N");
        var prompt = $"prompt-{secret}-please-never-log-me";
        var output = $"output-{secret}-never-logged-either";
        var model = ApiClient.Unique() + ":1b";

        using var signUp = await http.PostAsJsonAsync(new Uri(silo.BaseAddress, "accounts"), new { name = "logs" });
        var key = (await ApiClient.ExpectAsync(signUp, HttpStatusCode.Created)).GetProperty("api_key").GetString()!;
        using var created = await SendAsync(http, silo, key, HttpMethod.Post, "keys", new { name = "w" });
        var workerKey = (await ApiClient.ExpectAsync(created, HttpStatusCode.Created)).GetProperty("key").GetString()!;
        using var registered = await SendAsync(http, silo, workerKey, HttpMethod.Post, "worker/register",
            new { name = "logs-worker", agent_version = "test", platform = "linux/amd64", models = new[] { new { name = model, serves_family = false } } });
        await ApiClient.ExpectAsync(registered, HttpStatusCode.Created);

        using var submitted = await SendAsync(http, silo, key, HttpMethod.Post, "jobs", new { model, model_match = "exact", prompt });
        var id = (await ApiClient.ExpectAsync(submitted, HttpStatusCode.Created)).GetProperty("job_id").GetInt64();
        using var polled = await SendAsync(http, silo, workerKey, HttpMethod.Get, $"worker/jobs/next?models[]={Uri.EscapeDataString(model)}", null);
        Assert.Equal(id, (await ApiClient.ExpectAsync(polled, HttpStatusCode.OK)).GetProperty("job_id").GetInt64());
        using var started = await SendAsync(http, silo, workerKey, HttpMethod.Patch, $"worker/jobs/{id}/start", null);
        await ApiClient.ExpectAsync(started, HttpStatusCode.OK);
        using var result = await SendAsync(http, silo, workerKey, HttpMethod.Post, $"worker/jobs/{id}/result",
            new { output, input_tokens = 3, output_tokens = 1, duration_ms = 5, model_used = model });
        await ApiClient.ExpectAsync(result, HttpStatusCode.OK);
        using var read = await SendAsync(http, silo, key, HttpMethod.Get, $"jobs/{id}", null);
        Assert.Equal(output, (await ApiClient.ExpectAsync(read, HttpStatusCode.OK)).GetProperty("output").GetString());

        // The GET's own "Executed endpoint" line is written before its response ends: once it is there, so is the rest.
        var jobId = id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        List<JsonElement> lines = [];
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            lines = [.. JsonLines(silo.Log)];
            if (lines.Any(l => JobIdOf(l) == jobId && ScopeValue(l, "RequestPath") == $"/api/v1/jobs/{id}" && Category(l) == "Microsoft.AspNetCore.Routing.EndpointMiddleware")) break;
            await Task.Delay(20);
        }

        var log = silo.Log;
        Assert.DoesNotContain(secret, log, StringComparison.Ordinal);
        Assert.DoesNotContain(key, log, StringComparison.Ordinal);
        Assert.DoesNotContain(workerKey, log, StringComparison.Ordinal);
        Assert.DoesNotContain(key[8..], log, StringComparison.Ordinal);
        Assert.DoesNotContain(workerKey[8..], log, StringComparison.Ordinal);

        var jobLines = lines.Where(l => JobIdOf(l) == jobId).ToList();
        Assert.NotEmpty(jobLines);
        // Every line about the job has a trace id.
        Assert.All(jobLines, l => Assert.False(string.IsNullOrEmpty(ScopeValue(l, "TraceId")), $"no TraceId on: {l}"));
        foreach (var path in new[] { $"/api/v1/worker/jobs/{id}/start", $"/api/v1/worker/jobs/{id}/result", $"/api/v1/jobs/{id}" })
        {
            Assert.True(jobLines.Any(l => ScopeValue(l, "RequestPath") == path),
                $"no line with the job id from the request to {path}; its lines: " + string.Join("\n", lines.Where(l => ScopeValue(l, "RequestPath") == path)));
        }
        // A request's lines after routing all carry the job id, whatever wrote them.
        var routed = lines.Where(l => ScopeValue(l, "RequestPath") == $"/api/v1/jobs/{id}" && Category(l) == "Microsoft.AspNetCore.Routing.EndpointMiddleware").ToList();
        Assert.NotEmpty(routed);
        Assert.All(routed, l => Assert.Equal(jobId, JobIdOf(l)));
    }

    private static IEnumerable<JsonElement> JsonLines(string log)
    {
        foreach (var line in log.Split('\n'))
        {
            var text = line.Trim();
            if (!text.StartsWith('{')) continue;
            JsonElement element;
            try
            {
                using var document = JsonDocument.Parse(text);
                element = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                continue;
            }
            yield return element;
        }
    }

    private static string Category(JsonElement line) => line.TryGetProperty("Category", out var category) ? category.GetString() ?? "" : "";

    private static string? JobIdOf(JsonElement line) => ScopeValue(line, "JobId");

    /// <summary>A value from the line's scopes (the formatter writes each scope's pairs as an object in <c>Scopes</c>).</summary>
    private static string? ScopeValue(JsonElement line, string name)
    {
        if (!line.TryGetProperty("Scopes", out var scopes) || scopes.ValueKind != JsonValueKind.Array) return null;
        foreach (var scope in scopes.EnumerateArray())
        {
            if (scope.ValueKind == JsonValueKind.Object && scope.TryGetProperty(name, out var value))
            {
                return value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText();
            }
        }
        return null;
    }

    private static async Task<HttpResponseMessage> SendAsync(HttpClient http, SiloProcess silo, string key, HttpMethod method, string path, object? body)
    {
        using var request = new HttpRequestMessage(method, new Uri(silo.BaseAddress, path));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null) request.Content = JsonContent.Create(body);
        return await http.SendAsync(request);
    }
}
