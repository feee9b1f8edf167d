using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Billing;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Api;

/// <summary>
/// Strings that are not Unicode text — lone surrogate escapes and bytes that are not UTF-8 — in every string field
/// (and field name) of every endpoint that reads a JSON body: the answer is the endpoint's own 4xx for a bad field,
/// naming the field, and nothing is written.
/// </summary>
public sealed class InvalidTextTests : IAsyncLifetime
{
    private const string WebhookSecret = "whsec_test_invalid_text";

    /// <summary>Where a template says <c>BAD</c>, the bytes of one bad text go, inside a JSON string literal.</summary>
    private const string Marker = "BAD";

    private static readonly (string Name, byte[] Bytes)[] Escapes =
    [
        ("a lone high surrogate", "\\ud800"u8.ToArray()),
        ("a lone low surrogate", "\\udc00"u8.ToArray()),
        ("a high surrogate before a letter", "\\ud800\\u0041"u8.ToArray()),
        ("two high surrogates", "\\ud83d\\ud83d"u8.ToArray()),
        ("a low surrogate before a high one", "\\ude00\\ud83d"u8.ToArray()),
        ("a high surrogate at the end", "x\\udbff"u8.ToArray()),
    ];

    private static readonly (string Name, byte[] Bytes)[] NotUtf8 =
    [
        ("0xC3 0x28", [0xC3, 0x28]),
        ("0xFF", [0xFF]),
        ("a bare continuation byte 0x80", [0x80]),
        ("an encoded surrogate 0xED 0xA0 0x80", [0xED, 0xA0, 0x80]),
        ("an overlong 0xC0 0xAF", [0xC0, 0xAF]),
        ("a truncated sequence 0xE2 0x82", [0xE2, 0x82]),
    ];

    private GridHost _host = null!;

    public async Task InitializeAsync() =>
        // Billing on, so that checkout reads its body; no request here may reach Stripe, so its address is a closed port.
        _host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
        {
            ["Billing:SecretKey"] = "sk_test_invalid_text",
            ["Billing:WebhookSecret"] = WebhookSecret,
            ["Billing:ApiBase"] = "http://127.0.0.1:9/",
        });

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task InvalidText_InAnyStringOrFieldName_Is422NamingTheField_AndWritesNothing()
    {
        var client = await _host.NewAccountAsync("invalid-text");
        var (worker, heldJob, model) = await client.SubmitAndClaimAsync(start: true);
        var pendingJob = await client.SubmitAsync(new { model = ApiClient.Unique(), model_match = "exact", prompt = "p" });

        var targets = new (ApiClient Caller, HttpMethod Method, string Path, (string Template, string Field)[] Cases)[]
        {
            (client, HttpMethod.Post, "jobs",
            [
                ("""{"prompt":"xBAD"}""", "prompt"),
                ("""{"model":"llama3BAD","prompt":"p"}""", "model"),
                ("""{"model_match":"BAD","prompt":"p"}""", "model_match"),
                ("""{"prompt":"p","tag":"tBAD"}""", "tag"),
                ("""{"prompt":"p","webhook_url":"https://example.com/BAD"}""", "webhook_url"),
                ("""{"prompt":"p","params":{"stop":["ok","BAD"]}}""", "params.stop[1]"),
                ("""{"prompt":"p","params":{"BAD":1}}""", "a field name in params"),
                ("""{"prompt":"p","BAD":1}""", "a field name in the request body"),
                ("""{"prompt":"p","blob_ids":["BAD"]}""", "blob_ids[0]"),
                // A field the endpoint does not read is still part of a body that is not I-JSON.
                ("""{"prompt":"p","note":"BAD"}""", "note"),
            ]),
            (client, HttpMethod.Patch, $"jobs/{pendingJob}/priority",
            [
                ("""{"priority":"BAD"}""", "priority"),
                ("""{"priority":1,"BAD":true}""", "a field name in the request body"),
            ]),
            (client, HttpMethod.Post, "keys", [("""{"name":"kBAD"}""", "name")]),
            (client, HttpMethod.Post, "blobs", [("""{"blob_type":"imageBAD"}""", "blob_type")]),
            (client, HttpMethod.Post, "billing/checkout", [("""{"plan":"proBAD"}""", "plan")]),
            (_host.Anonymous(), HttpMethod.Post, "accounts", [("""{"name":"aBAD"}""", "name")]),
            (worker, HttpMethod.Post, "worker/register",
            [
                ($$"""{"name":"wBAD","models":["{{model}}"]}""", "name"),
                ($$"""{"agent_version":"1.0BAD","models":["{{model}}"]}""", "agent_version"),
                ($$"""{"platform":"linuxBAD","models":["{{model}}"]}""", "platform"),
                ("""{"models":["BAD"]}""", "models[0]"),
                ($$"""{"models":["{{model}}",{"name":"mBAD"}]}""", "models[1].name"),
                ($$"""{"models":[{"name":"{{model}}","BAD":true}]}""", "a field name in models[0]"),
            ]),
            (worker, HttpMethod.Patch, "worker/models",
            [
                ("""{"models":[{"name":"mBAD","serves_family":true}]}""", "models[0].name"),
                ("""{"models":["BAD"]}""", "models[0]"),
            ]),
            (worker, HttpMethod.Post, $"worker/jobs/{heldJob}/result",
            [
                ("""{"output":"oBAD","output_tokens":1,"duration_ms":1}""", "output"),
                ($$"""{"output":"o","output_tokens":1,"duration_ms":1,"model_used":"{{model}}BAD"}""", "model_used"),
            ]),
            (worker, HttpMethod.Post, $"worker/jobs/{heldJob}/fail", [("""{"error":"eBAD"}""", "error")]),
        };

        var before = await SnapshotAsync();
        var failures = new List<string>();
        var sent = 0;
        foreach (var (caller, method, path, cases) in targets)
        {
            foreach (var (template, field) in cases)
            {
                foreach (var (name, bytes) in Escapes.Concat(NotUtf8))
                {
                    var (status, text, message) = await SendAsync(caller, method, path, Splice(template, bytes));
                    sent++;
                    var what = $"{method} {path} {template} with {name} → {status} {text}";
                    if (status != HttpStatusCode.UnprocessableEntity) failures.Add(what);
                    else if (message is null) failures.Add($"{what}: not the spec's error shape");
                    else if (!message.Contains(field + " must be", StringComparison.Ordinal)) failures.Add($"{what}: does not name {field}");
                }
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {sent}:\n" + string.Join("\n", failures.Take(30)));
        Assert.Equal(before, await SnapshotAsync());
        Assert.Equal("running", (await client.GetJobAsync(heldJob)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task InvalidText_InASignedStripeEvent_Is400NamingTheField_AndWritesNothing()
    {
        var (accountId, _) = await _host.Anonymous().SignUpAsync("stripe-invalid-text");
        var templates = new (string Template, string Field)[]
        {
            ("""{"id":"evt_BAD","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_1"}}}""", "id"),
            ("""{"id":"EVENT_ID","object":"event","type":"customer.subscription.updated","data":{"object":{"id":"sub_1","customer":"cus_BAD","status":"active","metadata":{"account_id":"ACCOUNT_ID"}}}}""", "data.object.customer"),
            ("""{"id":"EVENT_ID","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_1","client_reference_id":"ACCOUNT_ID","metadata":{"BAD":"x"}}}}""", "a field name in data.object.metadata"),
        };
        var before = await SnapshotAsync();
        var failures = new List<string>();
        foreach (var (template, field) in templates)
        {
            foreach (var (name, bytes) in Escapes)
            {
                var payload = Encoding.ASCII.GetString(Splice(template.Replace("EVENT_ID", NewEventId()).Replace("ACCOUNT_ID", accountId.ToString()), bytes));
                using var request = new HttpRequestMessage(HttpMethod.Post, "billing/stripe/webhook") { Content = new StringContent(payload, Encoding.UTF8, "application/json") };
                request.Headers.Add("Stripe-Signature", StripeSignature.Sign(payload, WebhookSecret, DateTimeOffset.UtcNow));
                var response = await _host.Http.SendAsync(request);
                var text = await response.Content.ReadAsStringAsync();
                var what = $"{template} with {name} → {(int)response.StatusCode} {text}";
                if (response.StatusCode != HttpStatusCode.BadRequest) failures.Add(what);
                else if (ErrorText(text) is not { } message || !message.Contains(field + " must be", StringComparison.Ordinal)) failures.Add($"{what}: does not name {field}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Equal(before, await SnapshotAsync());
    }

    [Fact]
    public async Task ValidSurrogatePairs_AndMultiByteUtf8_AreAccepted()
    {
        var client = await _host.NewAccountAsync("valid-text");
        // U+1F600 as an escaped pair, and U+00E9 U+4E2D U+1F600 as raw UTF-8 bytes.
        var (status, text, _) = await SendAsync(client, HttpMethod.Post, "keys", """{"name":"k\ud83d\ude00 é中😀"}"""u8.ToArray());
        Assert.True(status == HttpStatusCode.Created, text);
        Assert.Equal("k\U0001F600 é中😀", JsonDocument.Parse(text).RootElement.GetProperty("name").GetString());
    }

    [Fact]
    public async Task AFailureMessageCutToItsLimit_KeepsASurrogatePairWhole()
    {
        var client = await _host.NewAccountAsync("long-error");
        var (worker, jobId, _) = await client.SubmitAndClaimAsync(start: true);
        // U+1F600 straddles the limit: a cut at exactly the limit would keep only its high surrogate.
        var error = new string('a', 9_999) + "\U0001F600" + "after the limit";

        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{jobId}/fail", new { error }), HttpStatusCode.OK);

        Assert.Equal(new string('a', 9_999), (await client.GetJobAsync(jobId)).GetProperty("error").GetString());
    }

    private static byte[] Splice(string template, byte[] bad)
    {
        var at = template.IndexOf(Marker, StringComparison.Ordinal);
        return [.. Encoding.UTF8.GetBytes(template[..at]), .. bad, .. Encoding.UTF8.GetBytes(template[(at + Marker.Length)..])];
    }

    private static string NewEventId() => "evt_" + Guid.NewGuid().ToString("N");

    /// <summary>Sends the bytes as they are: a string body would be re-encoded and lose the bad bytes.</summary>
    private static async Task<(HttpStatusCode Status, string Text, string? Message)> SendAsync(ApiClient caller, HttpMethod method, string path, byte[] body)
    {
        using var request = new HttpRequestMessage(method, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (TryKey(caller) is { } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var response = await caller.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text, ErrorText(text));
    }

    private static string? TryKey(ApiClient caller)
    {
        try
        {
            return caller.Key;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The text of a spec error body (<c>{"error", "message"}</c> or <c>{"errors": [...]}</c>), or null for any other body.</summary>
    private static string? ErrorText(string text)
    {
        try
        {
            var json = JsonDocument.Parse(text).RootElement;
            if (json.ValueKind != JsonValueKind.Object) return null;
            if (json.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array) return string.Join("; ", errors.EnumerateArray().Select(e => e.GetString()));
            if (json.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.String)
            {
                return json.TryGetProperty("message", out var message) ? $"{error.GetString()}: {message.GetString()}" : error.GetString();
            }
            return null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>What a request could have written: the rows of every table a body reaches, less the times that reading and authenticating touch.</summary>
    private async Task<string> SnapshotAsync()
    {
        await using var connection = await _host.OpenConnectionAsync();
        await using var command = new Npgsql.NpgsqlCommand("""
            SELECT concat_ws(' | ',
                (SELECT count(*) FROM accounts), (SELECT count(*) FROM api_keys), (SELECT count(*) FROM blobs), (SELECT count(*) FROM stripe_events),
                (SELECT string_agg(concat_ws(',', id, name, plan, stripe_customer_id, stripe_subscription_id), ';' ORDER BY id) FROM accounts),
                (SELECT string_agg(concat_ws(',', id, name, agent_version, platform, catch_all), ';' ORDER BY id) FROM workers),
                (SELECT string_agg(concat_ws(',', worker_id, model, serves_family), ';' ORDER BY worker_id, model) FROM worker_models),
                (SELECT string_agg(concat_ws(',', id, status, priority, output, error, model_used, tag, params::text), ';' ORDER BY id) FROM jobs))
            """, connection);
        return (string)(await command.ExecuteScalarAsync())!;
    }
}
