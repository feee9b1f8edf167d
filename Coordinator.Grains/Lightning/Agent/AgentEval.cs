using System.Globalization;
using System.Text.Json;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>An evaluator's verdict on a request: accept or reject, why, and how many tokens the work will take.</summary>
public sealed record EvalVerdict(bool Accept, string Reason, long EstimatedTokens);

/// <summary>
/// The eval: the prompt the eval model gets, and the reading of its answer. The model is asked for one JSON object,
/// <c>{"accept": bool, "reason": string, "estimated_tokens": integer}</c>; the first such object in its output counts, so
/// prose around it is tolerated.
/// </summary>
public static class AgentEval
{
    public static string Prompt(string request) => $$"""
        You review requests for a paid AI agent. Decide whether to accept the request below: reject requests that are
        illegal, harmful, or impossible to answer in text. Estimate how many tokens (input and output together) the answer
        will take. Reply with exactly one JSON object and nothing else:
        {"accept": true or false, "reason": "one sentence", "estimated_tokens": integer}

        Request:
        {{request}}
        """;

    /// <summary>The verdict in <paramref name="output"/>, or null when it holds none; the estimate is clamped to 1..<paramref name="maxTokens"/>.</summary>
    public static EvalVerdict? Parse(string? output, long maxTokens)
    {
        if (string.IsNullOrEmpty(output)) return null;
        for (var start = output.IndexOf('{', StringComparison.Ordinal); start >= 0; start = output.IndexOf('{', start + 1))
        {
            if (TryRead(output.AsSpan(start), maxTokens) is { } verdict) return verdict;
        }
        return null;
    }

    private static EvalVerdict? TryRead(ReadOnlySpan<char> text, long maxTokens)
    {
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(text.ToArray()), new JsonReaderOptions { AllowTrailingCommas = true });
        try
        {
            using var document = JsonDocument.ParseValue(ref reader);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("accept", out var accept)
                || accept.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return null;
            }
            var reason = root.TryGetProperty("reason", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
            long tokens = maxTokens;
            if (root.TryGetProperty("estimated_tokens", out var t))
            {
                if (t.ValueKind == JsonValueKind.Number && t.TryGetDecimal(out var n)) tokens = (long)Math.Ceiling(Math.Clamp(n, 1, maxTokens));
                else if (t.ValueKind == JsonValueKind.String && long.TryParse(t.GetString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s)) tokens = Math.Clamp(s, 1, maxTokens);
            }
            return new EvalVerdict(accept.GetBoolean(), reason.Length > 500 ? reason[..500] : reason, tokens);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
