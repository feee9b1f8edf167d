using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Coordinator.Grains;

/// <summary>Rules about model names: validity, family, and a readable display name.</summary>
public static partial class ModelNames
{
    /// <summary>Longest model name accepted.</summary>
    public const int MaxLength = 200;

    // Ollama names look like llama3:8b, library/mistral:7b-instruct-q4_K_M or hf.co/user/repo:Q4_K_M.
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]*$")]
    private static partial Regex ValidName();

    public static bool IsValid(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxLength && ValidName().IsMatch(name);

    /// <summary>The family is the name before the tag: <c>llama3:8b</c> → <c>llama3</c>.</summary>
    public static string FamilyOf(string model)
    {
        var colon = model.LastIndexOf(':');
        return colon > 0 ? model[..colon] : model;
    }

    /// <summary>
    /// A display name for the registry: <c>llama3:8b</c> → "Llama 3 8B", <c>qwen2.5:14b</c> → "Qwen 2.5 14B",
    /// <c>mistral:latest</c> → "Mistral".
    /// </summary>
    public static string DisplayNameOf(string model)
    {
        var family = FamilyOf(model);
        var tag = family.Length < model.Length ? model[(family.Length + 1)..] : "";
        var baseName = family[(family.LastIndexOf('/') + 1)..];

        var words = new List<string>();
        foreach (var part in baseName.Split(['-', '_'], StringSplitOptions.RemoveEmptyEntries))
        {
            // Split letters from the version that follows them: llama3 -> Llama 3, qwen2.5 -> Qwen 2.5.
            var split = 0;
            while (split < part.Length && char.IsLetter(part[split])) split++;
            if (split > 0) words.Add(Capitalise(part[..split]));
            if (split < part.Length) words.Add(part[split..]);
        }
        if (tag.Length > 0 && !tag.Equals("latest", StringComparison.OrdinalIgnoreCase))
        {
            words.Add(SizeTag().IsMatch(tag) ? tag.ToUpperInvariant() : tag);
        }
        return words.Count > 0 ? string.Join(' ', words) : model;
    }

    [GeneratedRegex(@"^[0-9.]+[bmkBMK]$")]
    private static partial Regex SizeTag();

    private static string Capitalise(string word) =>
        word.Length == 0 ? word : string.Create(word.Length, word, (span, w) =>
        {
            span[0] = char.ToUpper(w[0], CultureInfo.InvariantCulture);
            w.AsSpan(1).CopyTo(span[1..]);
        });
}
