using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;

namespace Coordinator.Api.Infrastructure;

/// <summary>
/// Finds the strings and field names in a parsed JSON value that are not Unicode text: raw bytes that are not
/// UTF-8, and <c>\uD800</c>-<c>\uDFFF</c> escapes without their other half. <see cref="JsonDocument"/> accepts
/// both, but reading such a string (<c>GetString</c>, <c>Name</c>, even <c>TryGetProperty</c> on its object)
/// throws, and PostgreSQL's <c>text</c> and <c>jsonb</c> refuse them; I-JSON (RFC 7493 §2.1) rules them out, so a
/// body holding one anywhere is refused before any field is read.
/// </summary>
public static class JsonText
{
    /// <summary>At most <paramref name="length"/> characters, never half a surrogate pair: PostgreSQL refuses a lone surrogate.</summary>
    public static string Truncate(string text, int length) =>
        text.Length <= length ? text : text[..(char.IsHighSurrogate(text[length - 1]) ? length - 1 : length)];

    /// <summary>Enough problems to fix a request without echoing a large body back.</summary>
    public const int MaxProblems = 5;

    private const int MaxNameInPath = 64;

    /// <summary>One message per bad string or field name, naming where it is (<c>models[0].name</c>); empty when all is text.</summary>
    public static IReadOnlyList<string> Problems(JsonElement root)
    {
        var problems = new List<string>();
        Walk(root, "", problems);
        return problems;
    }

    private static void Walk(JsonElement element, string path, List<string> problems)
    {
        if (problems.Count >= MaxProblems) return;
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                if (Flaw(JsonMarshal.GetRawUtf8Value(element), () => element.GetString()) is { } flaw)
                {
                    problems.Add($"{(path.Length == 0 ? "the request body" : path)} must be {flaw}");
                }
                break;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray()) Walk(item, $"{path}[{index++}]", problems);
                break;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (problems.Count >= MaxProblems) return;
                    if (Flaw(JsonMarshal.GetRawUtf8PropertyName(property), () => property.Name) is { } nameFlaw)
                    {
                        // The bad name cannot itself be shown; its value goes unread with it.
                        problems.Add($"a field name in {(path.Length == 0 ? "the request body" : path)} must be {nameFlaw}");
                        continue;
                    }
                    Walk(property.Value, path.Length == 0 ? Shorten(property.Name) : $"{path}.{Shorten(property.Name)}", problems);
                }
                break;
        }
    }

    /// <summary>What is wrong with one string as it stands in the JSON text (escapes unexpanded), or null.</summary>
    private static string? Flaw(ReadOnlySpan<byte> raw, Func<string?> read)
    {
        if (!Utf8.IsValid(raw)) return "UTF-8 text: it holds bytes that are not UTF-8";
        // Valid UTF-8 without escapes is valid text; only an escape can spell a lone surrogate.
        if (raw.IndexOf((byte)'\\') < 0) return null;
        try
        {
            _ = read();
            return null;
        }
        catch (InvalidOperationException)
        {
            return "valid Unicode text: it holds a lone surrogate escape (\\ud800-\\udfff without its other half)";
        }
    }

    private static string Shorten(string name)
    {
        if (name.Length <= MaxNameInPath) return name;
        var cut = char.IsHighSurrogate(name[MaxNameInPath - 1]) ? MaxNameInPath - 1 : MaxNameInPath;
        return name[..cut] + "…";
    }
}
