using System.Text;
using System.Text.Json;

namespace Coordinator.Api.Infrastructure;

/// <summary>
/// Reads a JSON object body field by field, collecting one clear message per bad field
/// ("priority must be an integer") instead of failing on the first.
/// </summary>
public sealed class JsonFields
{
    private readonly JsonElement _root;
    private readonly string _prefix;

    private JsonFields(JsonElement root, string prefix = "", List<string>? errors = null)
    {
        _root = root;
        _prefix = prefix;
        Errors = errors ?? [];
    }

    public List<string> Errors { get; }

    /// <summary>The raw object, e.g. to store it once every field has been checked.</summary>
    public JsonElement Root => _root;

    public bool IsValid => Errors.Count == 0;

    /// <summary>
    /// Parses the request body. An empty body counts as <c>{}</c> when <paramref name="allowEmpty"/>. A body with a
    /// string or field name that is not Unicode text anywhere in it is refused here, naming where (see <see cref="JsonText"/>).
    /// </summary>
    public static async Task<(JsonFields? Fields, string? Error)> ReadAsync(HttpRequest request, bool allowEmpty = false)
    {
        try
        {
            using var document = await JsonDocument.ParseAsync(request.Body, default, request.HttpContext.RequestAborted);
            if (document.RootElement.ValueKind != JsonValueKind.Object) return (null, "the request body must be a JSON object");
            if (JsonText.Problems(document.RootElement) is { Count: > 0 } problems) return (null, string.Join("; ", problems));
            return (new JsonFields(document.RootElement.Clone()), null);
        }
        catch (JsonException exception)
        {
            if (allowEmpty && request.ContentLength is null or 0 && exception.BytePositionInLine == 0 && exception.LineNumber == 0)
            {
                using var empty = JsonDocument.Parse("{}");
                return (new JsonFields(empty.RootElement.Clone()), null);
            }
            return (null, $"the request body is not valid JSON: {exception.Message.Split(" Path:")[0]}");
        }
    }

    /// <summary>
    /// <see cref="ReadAsync"/> for endpoints whose contract takes only <c>application/json</c> (the Lightning agent API's,
    /// its gemini paths included): a body sent as anything else, or without a <c>Content-Type</c>, is refused unread.
    /// </summary>
    public static async Task<(JsonFields? Fields, string? Error)> ReadJsonAsync(HttpRequest request) =>
        request.HasJsonContentType() ? await ReadAsync(request) : (null, "send the body as JSON, with Content-Type: application/json");

    private bool TryGet(string name, out JsonElement value)
    {
        if (_root.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null) return true;
        value = default;
        return false;
    }

    public bool Has(string name) => TryGet(name, out _);

    public string? String(string name, bool required = false, int maxLength = int.MaxValue, int? maxUtf8Bytes = null)
    {
        if (!TryGet(name, out var value))
        {
            if (required) Errors.Add($"{_prefix}{name} is required");
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            Errors.Add($"{_prefix}{name} must be a string");
            return null;
        }
        var text = value.GetString()!;
        if (text.Contains('\0', StringComparison.Ordinal))
        {
            // PostgreSQL text cannot hold NUL.
            Errors.Add($"{_prefix}{name} must not contain NUL (\\u0000) characters");
            return null;
        }
        if (required && string.IsNullOrWhiteSpace(text))
        {
            Errors.Add($"{_prefix}{name} is required");
            return null;
        }
        if (text.Length > maxLength)
        {
            Errors.Add($"{_prefix}{name} must be at most {maxLength} characters");
            return null;
        }
        if (maxUtf8Bytes is { } limit && Encoding.UTF8.GetByteCount(text) > limit)
        {
            Errors.Add($"{_prefix}{name} is larger than the limit of {limit} bytes");
            return null;
        }
        return text;
    }

    public int? Int(string name, bool required = false, long min = int.MinValue, long max = int.MaxValue)
    {
        if (!TryGet(name, out var value))
        {
            if (required) Errors.Add($"{_prefix}{name} is required");
            return null;
        }
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number))
        {
            Errors.Add($"{_prefix}{name} must be an integer");
            return null;
        }
        if (number < min || number > max)
        {
            Errors.Add(min == 0 && max == int.MaxValue ? $"{_prefix}{name} must not be negative" : $"{_prefix}{name} must be between {min} and {max}");
            return null;
        }
        return (int)number;
    }

    /// <summary>A number (integer or not), or null when absent.</summary>
    public double? Number(string name, double min, double max)
    {
        if (!TryGet(name, out var value)) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var number) || !double.IsFinite(number))
        {
            Errors.Add($"{_prefix}{name} must be a number");
            return null;
        }
        if (number < min || number > max)
        {
            Errors.Add($"{_prefix}{name} must be between {min} and {max}");
            return null;
        }
        return number;
    }

    /// <summary>A nested object whose fields report errors as <c>name.field</c>; null when absent.</summary>
    public JsonFields? Object(string name)
    {
        if (!TryGet(name, out var value)) return null;
        if (value.ValueKind != JsonValueKind.Object)
        {
            Errors.Add($"{_prefix}{name} must be an object");
            return null;
        }
        return new JsonFields(value, $"{_prefix}{name}.", Errors);
    }

    /// <summary>Property names present that are not in <paramref name="known"/>.</summary>
    public IEnumerable<string> UnknownFields(IReadOnlyCollection<string> known) =>
        _root.EnumerateObject().Select(p => p.Name).Where(n => !known.Contains(n));

    public string Prefix => _prefix;

    public bool? Bool(string name)
    {
        if (!TryGet(name, out var value)) return null;
        if (value.ValueKind is JsonValueKind.True or JsonValueKind.False) return value.GetBoolean();
        Errors.Add($"{_prefix}{name} must be true or false");
        return null;
    }

    /// <summary>An array's items, or null when absent.</summary>
    public IReadOnlyList<JsonElement>? Array(string name, bool required = false, int maxItems = 1000)
    {
        if (!TryGet(name, out var value))
        {
            if (required) Errors.Add($"{_prefix}{name} is required");
            return null;
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            Errors.Add($"{_prefix}{name} must be an array");
            return null;
        }
        if (value.GetArrayLength() > maxItems)
        {
            Errors.Add($"{_prefix}{name} must have at most {maxItems} items");
            return null;
        }
        return value.EnumerateArray().ToList();
    }
}
