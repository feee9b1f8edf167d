using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Dapper;
using static Coordinator.Tests.Infrastructure.Fuzz;

namespace Coordinator.Tests.Gemini;

/// <summary>
/// Throws seeded random input at the Lightning agent spec's gemini paths under <c>/api/gemini</c>: bodies of every shape,
/// strings that are not text, huge bodies, other content types, conversation ids of any length and bytes, bad API keys.
/// Whatever comes in, the answer comes, is a 2xx (a reply's event stream included) or a 4xx in the spec's
/// <c>GeminiError</c> (exactly <c>{"error": "…"}</c>), never a 5xx but the 503 that says no worker makes images, and a
/// refused request writes nothing: no conversation, message or grid job.
/// </summary>
public sealed class GeminiFuzzTests : IAsyncLifetime
{
    private const int Seed = 20261124;
    private const int RequestsPerEndpoint = 120;


    private GridHost _host = null!;
    private HttpClient _gemini = null!;

    public async Task InitializeAsync()
    {
        _host = await GridHost.StartAsync();
        _gemini = Client(_host);
    }

    public async Task DisposeAsync()
    {
        _gemini?.Dispose();
        if (_host is not null) await _host.DisposeAsync();
    }

    [Fact]
    public async Task RandomBodies_AreAnswered2xxOr4xxInTheSpecShape_AndRefusedOnesWriteNothing()
    {
        var random = new Random(Seed);
        var key = (await _host.NewAccountAsync("gemini-fuzz")).Key;
        var conversation = await NewConversationAsync(key);
        var targets = new (string Path, string[] Fields)[]
        {
            ("conversations", ["title"]),
            ($"conversations/{conversation}/messages", ["content", "model"]),
            ("generate-image", ["prompt"]),
        };
        var failures = new List<string>();
        foreach (var (path, fields) in targets)
        {
            var statuses = new HashSet<int>();
            for (var i = 0; i < RequestsPerEndpoint; i++)
            {
                var body = RandomBody(random, fields);
                var contentType = random.Next(8) == 0 ? OtherContentTypes[random.Next(OtherContentTypes.Length)] : "application/json";
                var what = $"POST {path} ({contentType}) {Shorten(body)}";
                var before = await RowsAsync();
                var status = await CheckAgentAnswerAsync(() => PostAsync(path, ToBytes(random, body), contentType, key), what, failures, expected: NoImageWorker);
                if (status is null) continue;
                statuses.Add(status.Value);
                if (contentType != "application/json" && status < 400) failures.Add($"{what} → {status}: a body that is not sent as JSON is accepted");
                // A reply's stream without a worker to write it ends in an error event, and stores nothing either.
                var wrote = path == "conversations" && status == 201;
                if (!wrote && await RowsAsync() is var after && after != before) failures.Add($"{what} → {status}, but it wrote: {before} → {after}");
            }
            // The fuzz reached past the checks: some bodies were refused, and some were valid (an image's 503 is one).
            if (!statuses.Contains(400) || !statuses.Any(s => s is 200 or 201 or 503)) failures.Add($"POST {path}: the answers were only {string.Join(", ", statuses)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public async Task EmptyBodies_OtherContentTypes_AndHugeBodies_Are4xxInTheSpecShape_AndWriteNothing()
    {
        var key = (await _host.NewAccountAsync("gemini-fuzz")).Key;
        var conversation = await NewConversationAsync(key);
        var targets = new (string Path, string ValidBody)[]
        {
            ("conversations", """{"title": "a chat"}"""),
            ($"conversations/{conversation}/messages", """{"content": "hello"}"""),
            ("generate-image", """{"prompt": "a cat"}"""),
        };
        var failures = new List<string>();
        foreach (var (path, valid) in targets)
        {
            var cases = RefusedBodies(valid);
            cases.AddRange(
            [
                // Past the title's 500 characters and the grid's 1 MiB prompt limit.
                ("fields over their limits", Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
                {
                    title = new string('t', 501),
                    content = new string('c', 1024 * 1024 + 1),
                    prompt = new string('p', 1024 * 1024 + 1),
                    model = new string('m', 300),
                })), "application/json"),
                ("a lone surrogate in every field", """{"title": "a\ud800", "content": "\udc00b", "prompt": "\ud800", "model": "m\ud800"}"""u8.ToArray(), "application/json"),
                ("bytes that are not UTF-8 in a field name", [.. "{\""u8, 0xC3, 0x28, .. "\": 1, \"title\": \"t\", \"content\": \"c\", \"prompt\": \"p\"}"u8], "application/json"),
                ("wrong types", """{"title": 1, "content": ["c"], "prompt": {"p": 1}, "model": true}"""u8.ToArray(), "application/json"),
            ]);
            // The huge body is past the server's body limit (Http:MaxRequestBodyBytes, 8 MiB): refused on its declared length.
            var huge = "{\"title\": \"t\", \"content\": \"c\", \"prompt\": \"" + new string('a', 9 * 1024 * 1024) + "\"}";
            await CheckRefusedAsync(path, cases, huge, (body, contentType, expectContinue) => PostAsync(path, body, contentType, key, expectContinue), RowsAsync, failures);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public async Task RandomIdsAndQueries_Are2xxOr4xxInTheSpecShape_AndDeleteNothingElse()
    {
        var random = new Random(Seed + 1);
        var key = (await _host.NewAccountAsync("gemini-fuzz")).Key;
        var conversation = await NewConversationAsync(key);
        var failures = new List<string>();
        for (var i = 0; i < RequestsPerEndpoint; i++)
        {
            var id = RandomId(random);
            if (id == conversation.ToString(System.Globalization.CultureInfo.InvariantCulture)) continue;
            await CheckAgentAnswerAsync(() => SendAsync(HttpMethod.Get, $"conversations/{id}", key), $"GET conversations/{id}", failures);
            await CheckAgentAnswerAsync(() => SendAsync(HttpMethod.Delete, $"conversations/{id}", key), $"DELETE conversations/{id}", failures);
            await CheckAgentAnswerAsync(() => SendAsync(HttpMethod.Get, $"conversations/{id}/messages", key), $"GET conversations/{id}/messages", failures);
            await CheckAgentAnswerAsync(() => PostAsync($"conversations/{id}/messages", """{"content": "hi"}"""u8.ToArray(), "application/json", key),
                $"POST conversations/{id}/messages", failures);
            var query = RandomQuery(random, ["limit", "offset", "id", "title"]);
            await CheckAgentAnswerAsync(() => SendAsync(HttpMethod.Get, "conversations?" + query, key), $"GET conversations?{query}", failures);
        }
        foreach (var (method, path) in new[] { ("PUT", "conversations"), ("PATCH", $"conversations/{conversation}"), ("GET", "generate-image"), ("GET", "nothing") })
        {
            await CheckAgentAnswerAsync(() => SendAsync(new HttpMethod(method), path, key), $"{method} {path}", failures);
        }
        // The conversation the random ids stood beside is still there.
        await CheckAgentAnswerAsync(() => SendAsync(HttpMethod.Get, $"conversations/{conversation}", key), "GET the conversation", failures);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
        await using var connection = await _host.OpenConnectionAsync();
        Assert.Equal(1, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM gemini_conversations WHERE id = @conversation", new { conversation }));
    }

    [Fact]
    public async Task BadApiKeys_Are401InTheSpecShape_AndWriteNothing()
    {
        var random = new Random(Seed + 2);
        var key = (await _host.NewAccountAsync("gemini-fuzz")).Key;
        var conversation = await NewConversationAsync(key);
        var headers = new List<string?>
        {
            null, "", "Bearer", "Bearer ", "Bearer    ", "Basic " + Convert.ToBase64String("user:pass"u8), "Token " + key, "Bearer" + key,
            "Bearer " + key + "x", "Bearer " + key[..^1], "Bearer " + key.ToUpperInvariant(), "Bearer " + key + " " + key, "Bearer vk_live_",
            "Bearer vk_live_" + new string('0', 5000), "Bearer " + new string('A', 20_000), "Bearer %00", "Bearer '; DROP TABLE accounts; --",
        };
        for (var i = 0; i < 40; i++) headers.Add("Bearer " + Uri.EscapeDataString(RandomString(random, random.Next(1, 80))));
        var targets = new (HttpMethod Method, string Path, string? Body)[]
        {
            (HttpMethod.Get, "conversations", null),
            (HttpMethod.Post, "conversations", """{"title": "t"}"""),
            (HttpMethod.Get, $"conversations/{conversation}", null),
            (HttpMethod.Delete, $"conversations/{conversation}", null),
            (HttpMethod.Get, $"conversations/{conversation}/messages", null),
            (HttpMethod.Post, $"conversations/{conversation}/messages", """{"content": "hi"}"""),
            (HttpMethod.Post, "generate-image", """{"prompt": "a cat"}"""),
        };
        var failures = new List<string>();
        var before = await RowsAsync();
        foreach (var header in headers)
        {
            foreach (var (method, path, body) in targets)
            {
                var what = $"{method} {path} with Authorization: {Shorten(header ?? "(none)")}";
                var status = await CheckAgentAnswerAsync(() =>
                {
                    var request = new HttpRequestMessage(method, path);
                    if (body is not null)
                    {
                        request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
                        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                    }
                    if (header is not null) request.Headers.TryAddWithoutValidation("Authorization", header);
                    return _gemini.SendAsync(request);
                }, what, failures);
                if (status is not null and not 401) failures.Add($"{what} → {status}, not 401");
            }
        }
        if (await RowsAsync() is var after && after != before) failures.Add($"bad keys wrote: {before} → {after}");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    /// <summary>Without an image worker a valid image request is the 503 that says so: the only 5xx allowed.</summary>
    private static bool NoImageWorker(int status, string text) =>
        status == 503 && IsErrorResponse(text) && text.Contains("no worker serves image generation", StringComparison.Ordinal);

    private async Task<long> NewConversationAsync(string key)
    {
        var response = await PostAsync("conversations", """{"title": "fuzzed"}"""u8.ToArray(), "application/json", key);
        return (await ApiClient.ExpectAsync(response, System.Net.HttpStatusCode.Created)).GetProperty("id").GetInt64();
    }

    /// <summary>The rows every refused request must leave as they were.</summary>
    private async Task<string> RowsAsync()
    {
        await using var connection = await _host.OpenConnectionAsync();
        var (conversations, messages, jobs) = await connection.QuerySingleAsync<(long, long, long)>(
            "SELECT (SELECT count(*) FROM gemini_conversations), (SELECT count(*) FROM gemini_messages), (SELECT count(*) FROM jobs)");
        return $"{conversations} conversations, {messages} messages, {jobs} grid jobs";
    }

    /// <summary>A client of <c>http://host/api/gemini/</c>, with no key of its own: each request carries the one it is sent with.</summary>
    private static HttpClient Client(GridHost host) => new() { BaseAddress = new Uri(host.BaseAddress, "/api/gemini/"), Timeout = TimeSpan.FromSeconds(100) };

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string key)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return await _gemini.SendAsync(request);
    }

    private async Task<HttpResponseMessage> PostAsync(string path, byte[]? body, string? contentType, string key, bool expectContinue = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            request.Content.Headers.ContentType = contentType is null ? null : MediaTypeHeaderValue.Parse(contentType);
        }
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (expectContinue) request.Headers.ExpectContinue = true;
        return await _gemini.SendAsync(request);
    }

    /// <summary>A conversation id: an integer of any size or sign, random text escaped (bytes that are not UTF-8 too), or very long.</summary>
    private static string RandomId(Random random) => random.Next(5) switch
    {
        0 => random.NextInt64(long.MinValue, long.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture),
        1 => Uri.EscapeDataString(RandomString(random, random.Next(1, 40)).Replace('\0', '0')),
        2 => "1" + NotUtf8InQueries[random.Next(NotUtf8InQueries.Length)],
        3 => new string('9', random.Next(19, 6000)),
        _ => Uri.EscapeDataString(new[] { "-0", "+999999999999", "1.5", "1e3", "0x10", " 999999999999", "9223372036854775808", "-9223372036854775809", "null", "NaN" }[random.Next(10)]),
    };
}
