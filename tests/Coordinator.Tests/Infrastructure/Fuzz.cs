using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Infrastructure;

/// <summary>
/// Seeded random input for the fuzz tests: JSON bodies that are often not objects, not JSON or not text, fields of every
/// type, queries, and strings with control characters, punctuation, lone surrogate escapes and bytes that are not UTF-8.
/// The same seed gives the same sequence, so a failure a run reports can be replayed.
/// </summary>
public static class Fuzz
{
    private const string Punctuation = "\"\\{}[]:,'%&=?/";

    /// <summary>Stands for one sequence that is not UTF-8 in a generated body, until <see cref="ToBytes"/> puts its bytes in.</summary>
    public const char NotUtf8Marker = '\uE000';

    public static readonly byte[][] NotUtf8 = [[0xFF], [0xC3, 0x28], [0x80], [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0xE2, 0x82]];

    public static readonly string[] NotUtf8InQueries = ["%FF", "%C3%28", "%80", "%ED%A0%80", "%C0%AF", "%E2%82"];

    /// <summary>Content types a JSON endpoint must refuse a body in, however valid the body.</summary>
    public static readonly string[] OtherContentTypes =
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "application/jsonp", "text/json"];

    /// <summary>
    /// The bodies every JSON endpoint must refuse with a 4xx, made from one <paramref name="valid"/> body: none, empty,
    /// whitespace, null, an empty object, and the valid body without a content type, in UTF-16, with a NUL after it,
    /// twice, and as each of <see cref="OtherContentTypes"/>. A test adds the cases of its own fields.
    /// </summary>
    public static List<(string What, byte[]? Body, string? ContentType)> RefusedBodies(string valid)
    {
        var bytes = Encoding.UTF8.GetBytes(valid);
        List<(string What, byte[]? Body, string? ContentType)> cases =
        [
            ("no body at all", null, null),
            ("an empty JSON body", [], "application/json"),
            ("whitespace", "  \r\n\t "u8.ToArray(), "application/json"),
            ("a JSON null", "null"u8.ToArray(), "application/json"),
            ("an empty object", "{}"u8.ToArray(), "application/json"),
            ("a valid body without a content type", bytes, null),
            ("a valid body in UTF-16", Encoding.Unicode.GetBytes(valid), "application/json; charset=utf-16"),
            ("a valid body and a NUL after it", [.. bytes, 0], "application/json"),
            ("two valid bodies", Encoding.UTF8.GetBytes(valid + valid), "application/json"),
        ];
        cases.AddRange(OtherContentTypes.Select(type => ($"a valid body as {type}", (byte[]?)bytes, (string?)type)));
        return cases;
    }

    /// <summary>
    /// Posts each of <paramref name="cases"/> to <paramref name="path"/> and then <paramref name="hugeBody"/> (past the
    /// server's 8 MiB body limit, sent with Expect: 100-continue): each must be a 4xx in the agent spec's shape (the huge
    /// one a 413), and none may change <paramref name="rows"/>, a census of the tables the endpoint could write.
    /// <paramref name="post"/> sends a body with a content type, and whether to expect 100-continue.
    /// </summary>
    public static async Task CheckRefusedAsync(string path, IEnumerable<(string What, byte[]? Body, string? ContentType)> cases, string hugeBody,
        Func<byte[]?, string?, bool, Task<HttpResponseMessage>> post, Func<Task<string>> rows, List<string> failures)
    {
        foreach (var (what, body, contentType) in cases)
        {
            var before = await rows();
            var status = await CheckAgentAnswerAsync(() => post(body, contentType, false), $"POST {path} with {what}", failures);
            if (status is not null and < 400) failures.Add($"POST {path} with {what} → {status}, not a 4xx");
            if (await rows() is var after && after != before) failures.Add($"POST {path} with {what} → {status}, but it wrote: {before} → {after}");
        }

        var beforeHuge = await rows();
        var hugeStatus = await CheckAgentAnswerAsync(() => post(Encoding.UTF8.GetBytes(hugeBody), "application/json", true), $"POST {path} with 9 MiB", failures, mayBreak: true);
        if (hugeStatus is not null and not 413) failures.Add($"POST {path} with 9 MiB → {hugeStatus}, not 413");
        if (await rows() is var afterHuge && afterHuge != beforeHuge) failures.Add($"POST {path} with 9 MiB wrote: {beforeHuge} → {afterHuge}");
    }

    /// <summary>A body for an endpoint that reads <paramref name="fields"/>: mostly an object with some of them (and now and then a stray field), each any JSON value; else not JSON, not an object, or nested past any limit.</summary>
    public static string RandomBody(Random random, string[] fields)
    {
        switch (random.Next(10))
        {
            case 0: return RandomString(random, random.Next(0, 40), invalid: true); // not JSON at all
            case 1: return RandomJson(random, 0); // any JSON value, often not an object
            case 2: return new string('[', random.Next(1, 200)); // deep or broken nesting
        }
        var builder = new StringBuilder("{");
        foreach (var field in fields.Where(_ => random.Next(3) > 0).Append(random.Next(8) == 0 ? RandomString(random, random.Next(0, 10), invalid: true) : null))
        {
            if (field is null) continue;
            if (builder.Length > 1) builder.Append(',');
            builder.Append(Quote(field)).Append(':').Append(RandomJson(random, 0));
        }
        return builder.Append('}').ToString();
    }

    /// <summary>Any JSON value: null, booleans, integers, huge and tiny numbers, strings (some not text), arrays and objects.</summary>
    public static string RandomJson(Random random, int depth) => random.Next(depth > 2 ? 7 : 9) switch
    {
        0 => "null",
        1 => random.Next(2) == 0 ? "true" : "false",
        2 => random.Next(int.MinValue, int.MaxValue).ToString(),
        3 => (random.NextDouble() * Math.Pow(10, random.Next(-5, 40)) * (random.Next(2) == 0 ? -1 : 1)).ToString("R", CultureInfo.InvariantCulture),
        4 => Quote(RandomString(random, random.Next(0, 300), invalid: random.Next(4) == 0)), // mostly valid text, so that the fields behind it are reached too
        5 => random.Next(2) == 0 ? "\"llama3:8b\"" : "\"https://example.com/hook\"",
        6 => random.Next(2) == 0 ? "99999999999999999999999" : "-0",
        7 => "[" + string.Join(',', Enumerable.Range(0, random.Next(0, 5)).Select(_ => RandomJson(random, depth + 1))) + "]",
        _ => "{" + string.Join(',', Enumerable.Range(0, random.Next(0, 4)).Select(i =>
            Quote(i == 0 ? "name" : random.Next(4) == 0 ? RandomString(random, random.Next(0, 8), invalid: true) : "k" + i) + ":" + RandomJson(random, depth + 1))) + "}",
    };

    /// <summary>A query string with some of <paramref name="fields"/>, each random text, a number, bytes that are not UTF-8 or a plausible value.</summary>
    public static string RandomQuery(Random random, string[] fields) =>
        string.Join('&', fields.Where(_ => random.Next(2) == 0).Select(f => Uri.EscapeDataString(f) + "=" + (random.Next(4) switch
        {
            0 => Uri.EscapeDataString(RandomString(random, random.Next(0, 30))),
            1 => random.Next(-1000, 1000).ToString(),
            // Percent-escapes that decode to bytes that are not UTF-8.
            2 => "a" + NotUtf8InQueries[random.Next(NotUtf8InQueries.Length)] + "b",
            _ => Uri.EscapeDataString(new[] { "pending", "true", "false", "llama3:8b", "2026-01-01T00:00:00Z", "", "0", "201" }[random.Next(8)]),
        })));

    /// <summary>
    /// Random characters; when <paramref name="invalid"/>, also surrogates (lone unless chance pairs them) and
    /// <see cref="NotUtf8Marker"/>s, which <see cref="Quote"/> and <see cref="ToBytes"/> turn into text that is not Unicode.
    /// </summary>
    public static string RandomString(Random random, int length, bool invalid = false)
    {
        var chars = new char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = random.Next(invalid ? 8 : 6) switch
            {
                0 => (char)random.Next(0, 32),
                1 => (char)random.Next(0x80, 0x800),
                2 => Punctuation[random.Next(Punctuation.Length)],
                6 => (char)random.Next(0xD800, 0xE000),
                7 => NotUtf8Marker,
                _ => (char)random.Next(32, 127),
            };
        }
        return new string(chars);
    }

    /// <summary>A JSON string literal in which every surrogate is a <c>\uXXXX</c> escape (so a lone one stays lone) and markers stay as they are.</summary>
    public static string Quote(string text)
    {
        var builder = new StringBuilder("\"");
        var start = 0;
        for (var i = 0; i <= text.Length; i++)
        {
            if (i < text.Length && !char.IsSurrogate(text[i]) && text[i] != NotUtf8Marker) continue;
            builder.Append(JsonSerializer.Serialize(text[start..i])[1..^1]);
            if (i < text.Length) builder.Append(text[i] == NotUtf8Marker ? NotUtf8Marker.ToString() : "\\u" + ((int)text[i]).ToString("x4", CultureInfo.InvariantCulture));
            start = i + 1;
        }
        return builder.Append('"').ToString();
    }

    /// <summary>The body as UTF-8, each marker replaced by a sequence that is not UTF-8.</summary>
    public static byte[] ToBytes(Random random, string body)
    {
        var bytes = new List<byte>();
        var parts = body.Split(NotUtf8Marker);
        for (var i = 0; i < parts.Length; i++)
        {
            if (i > 0) bytes.AddRange(NotUtf8[random.Next(NotUtf8.Length)]);
            bytes.AddRange(Encoding.UTF8.GetBytes(parts[i]));
        }
        return [.. bytes];
    }

    /// <summary>Long enough for any request a fuzz test makes; a request still unanswered after it is a hang.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>
    /// For the Lightning agent API and its gemini paths: sends, and reads the whole answer. Null (and a failure noted)
    /// when it does not come within <see cref="Patience"/>, or (for <paramref name="mayBreak"/>, a body the server may
    /// refuse before it is all sent) when the connection breaks; else its status, checked: a 5xx that
    /// <paramref name="expected"/> does not allow, or a 4xx that is not exactly <c>{"error": "…"}</c>, is a failure.
    /// </summary>
    public static async Task<int?> CheckAgentAnswerAsync(Func<Task<HttpResponseMessage>> send, string what, List<string> failures,
        bool mayBreak = false, Func<int, string, bool>? expected = null)
    {
        HttpResponseMessage response;
        string text;
        try
        {
            var answer = send();
            if (await Task.WhenAny(answer, Task.Delay(Patience)) != answer)
            {
                failures.Add($"{what} → no answer within {Patience.TotalSeconds} s");
                return null;
            }
            response = await answer;
            text = await response.Content.ReadAsStringAsync();
        }
        catch (HttpRequestException) when (mayBreak)
        {
            // The server may answer and close the connection before the client has finished sending.
            return null;
        }
        var status = (int)response.StatusCode;
        if (expected?.Invoke(status, text) == true) return status;
        if (status >= 500) failures.Add($"{what} → {status} {Shorten(text)}");
        else if (status >= 400 && !IsErrorResponse(text)) failures.Add($"{what} → {status}, not in the spec's ErrorResponse shape: {Shorten(text)}");
        else if (status < 400 && status is not (200 or 201 or 204)) failures.Add($"{what} → unexpected {status}");
        return status;
    }

    /// <summary>The Lightning agent spec's <c>ErrorResponse</c> (and <c>GeminiError</c>) as this API sends it: exactly <c>{"error": "…"}</c>, a sentence.</summary>
    public static bool IsErrorResponse(string text)
    {
        try
        {
            var json = JsonDocument.Parse(text).RootElement;
            return json.ValueKind == JsonValueKind.Object && json.EnumerateObject().Select(p => p.Name).SequenceEqual(["error"])
                && json.GetProperty("error") is { ValueKind: JsonValueKind.String } error && !string.IsNullOrWhiteSpace(error.GetString());
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The text cut to 120 characters, for a failure's description.</summary>
    public static string Shorten(string text) => text.Length <= 120 ? text : text[..120] + "…";
}
