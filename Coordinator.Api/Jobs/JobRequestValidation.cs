using Coordinator.Api.Infrastructure;
using Coordinator.Grains;
using Coordinator.Grains.Jobs;

namespace Coordinator.Api.Jobs;

/// <summary>Validates <c>POST /jobs</c> bodies; every bad field gets its own message.</summary>
public static class JobRequestValidation
{
    public const int MaxTagLength = 200;
    public const int MaxUrlLength = 2048;

    /// <summary>The job to insert, or every error; and whether the client asked for a paid priority boost.</summary>
    public static (NewJob? Job, IReadOnlyList<string> Errors, bool WantsBoost) Validate(JsonFields fields, JobLimitsOptions limits)
    {
        var prompt = fields.String("prompt", required: true, maxUtf8Bytes: limits.MaxPromptBytes);
        var model = fields.String("model", maxLength: ModelNames.MaxLength);
        if (model is not null && string.IsNullOrWhiteSpace(model)) model = null; // "Leave blank to use any match."
        if (model is not null && !ModelNames.IsValid(model)) fields.Errors.Add("model is not a valid model name (letters, digits and . _ : / @ + -)");

        var modelMatch = fields.String("model_match");
        if (modelMatch is null && !fields.Has("model_match"))
        {
            // The spec's default is family; with no model there is nothing to match but `any`.
            modelMatch = model is null ? ModelMatch.Any : ModelMatch.Family;
        }
        else if (modelMatch is not null && !ModelMatch.All.Contains(modelMatch))
        {
            fields.Errors.Add("model_match must be one of exact, family, any");
        }
        if (modelMatch is ModelMatch.Exact or ModelMatch.Family && model is null && !fields.Errors.Any(e => e.StartsWith("model ", StringComparison.Ordinal)))
        {
            fields.Errors.Add($"model is required when model_match is {modelMatch}");
        }

        var priority = fields.Int("priority", min: -1_000_000, max: 1_000_000);
        var timeout = fields.Int("timeout_seconds", min: 1, max: limits.MaxTimeoutSeconds);
        var tag = fields.String("tag", maxLength: MaxTagLength);

        var webhookUrl = fields.String("webhook_url", maxLength: MaxUrlLength);
        if (webhookUrl is not null && !(Uri.TryCreate(webhookUrl, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttps || uri.Scheme == Uri.UriSchemeHttp) && !string.IsNullOrEmpty(uri.Host)))
        {
            fields.Errors.Add("webhook_url must be an absolute http or https URL");
        }

        var wantsBoost = fields.Bool("priority_boost") == true;
        var paramsJson = ValidateParams(fields);
        var blobIds = ValidateBlobIds(fields);

        if (!fields.IsValid) return (null, fields.Errors, wantsBoost);
        return (new NewJob(model, modelMatch!, prompt!, priority, timeout ?? limits.DefaultTimeoutSeconds, tag, webhookUrl) { ParamsJson = paramsJson, BlobIds = blobIds }, [], wantsBoost);
    }

    public const int MaxBlobsPerJob = 100;

    /// <summary>The ids in <c>blob_ids</c>, each once and in order; whether they name confirmed blobs of the caller is checked against the database.</summary>
    private static List<long> ValidateBlobIds(JsonFields fields)
    {
        var ids = new List<long>();
        foreach (var item in fields.Array("blob_ids", maxItems: MaxBlobsPerJob) ?? [])
        {
            if (item.ValueKind != System.Text.Json.JsonValueKind.Number || !item.TryGetInt64(out var id) || id <= 0)
            {
                fields.Errors.Add("blob_ids must be blob ids (positive integers) from POST /blobs");
                return [];
            }
            if (!ids.Contains(id)) ids.Add(id);
        }
        return ids;
    }

    /// <summary>The generation parameters this API accepts (an addition to the spec, documented in the served OpenAPI document).</summary>
    public static readonly IReadOnlyCollection<string> ParamNames = ["max_tokens", "temperature", "top_p", "stop", "seed"];

    public const int MaxStopSequences = 16;
    public const int MaxStopLength = 200;

    /// <summary>Checks <c>params</c>; answers it as compact JSON with only the known fields, or null when absent.</summary>
    private static string? ValidateParams(JsonFields fields)
    {
        var parameters = fields.Object("params");
        if (parameters is null) return null;
        foreach (var unknown in parameters.UnknownFields(ParamNames))
        {
            fields.Errors.Add($"params.{unknown} is not a known parameter (known: {string.Join(", ", ParamNames)})");
        }
        return System.Text.Json.JsonSerializer.Serialize(ReadParams(parameters));
    }

    /// <summary>
    /// The generation parameters in <paramref name="parameters"/> (a job's <c>params</c>, or the top level of an
    /// OpenAI-compatible request), each checked against its range; answers the valid ones by their <see cref="ParamNames"/>
    /// name, and adds an error to <paramref name="parameters"/> for each bad one. Fields it does not know are left alone.
    /// </summary>
    /// <param name="parameters">Where the fields are.</param>
    /// <param name="maxTokensField">The field that holds <c>max_tokens</c> (OpenAI's newer name is <c>max_completion_tokens</c>).</param>
    /// <param name="stopMayBeString">A single stop sequence may be sent as a string instead of an array of one (OpenAI's form).</param>
    public static Dictionary<string, object> ReadParams(JsonFields parameters, string maxTokensField = "max_tokens", bool stopMayBeString = false)
    {
        var maxTokens = parameters.Int(maxTokensField, min: 1, max: MaxTokens);
        var temperature = parameters.Number("temperature", 0, 2);
        var topP = parameters.Number("top_p", 0, 1);
        var seed = parameters.Int("seed");
        List<string>? stop = null;
        if (stopMayBeString && parameters.Root.TryGetProperty("stop", out var single) && single.ValueKind == System.Text.Json.JsonValueKind.String)
        {
            stop = StopSequence(single, parameters) is { } text ? [text] : null;
        }
        else if (parameters.Array("stop", maxItems: MaxStopSequences) is { } items)
        {
            stop = [];
            foreach (var item in items)
            {
                if (StopSequence(item, parameters) is not { } text) break;
                stop.Add(text);
            }
        }
        var normalized = new Dictionary<string, object>();
        if (maxTokens is { } m) normalized["max_tokens"] = m;
        if (temperature is { } t) normalized["temperature"] = t;
        if (topP is { } p) normalized["top_p"] = p;
        if (stop is not null) normalized["stop"] = stop;
        if (seed is { } s) normalized["seed"] = s;
        return normalized;
    }

    /// <summary>Most tokens a job may ask for (<c>max_tokens</c>).</summary>
    public const int MaxTokens = 32768;

    private static string? StopSequence(System.Text.Json.JsonElement item, JsonFields parameters)
    {
        if (item.ValueKind != System.Text.Json.JsonValueKind.String || item.GetString() is not { Length: > 0 and <= MaxStopLength } text || text.Contains('\0', StringComparison.Ordinal))
        {
            parameters.Errors.Add($"{parameters.Prefix}stop must be non-empty strings of at most {MaxStopLength} characters");
            return null;
        }
        return text;
    }
}
