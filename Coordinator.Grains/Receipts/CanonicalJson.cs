using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Coordinator.Grains.Receipts;

/// <summary>
/// The canonical JSON that receipts are signed over: byte for byte what Python writes with
/// <c>json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))</c>, which is how AITBC's verifier rebuilds it.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Object keys sorted by Unicode code point (Python's <c>str</c> order; not UTF-16 order, where a character beyond
/// U+FFFF would sort before U+E000–U+FFFF). A key that appears twice keeps its last value, as <c>json.loads</c> does.</item>
/// <item>No whitespace.</item>
/// <item>Strings as <c>ensure_ascii</c> writes them: <c>\"</c>, <c>\\</c>, <c>\n</c>, <c>\r</c>, <c>\t</c>, <c>\b</c>,
/// <c>\f</c>; every other character outside U+0020–U+007E (controls, DEL and all non-ASCII) as <c>\uxxxx</c> (lowercase
/// hex; beyond U+FFFF as its surrogate pair); <c>/</c> as it is.</item>
/// <item>A number written without <c>.</c>, <c>e</c> or <c>E</c> is an integer of any size (<c>-0</c> is <c>0</c>); any
/// other number is a double, written as Python's <c>repr</c> of a float: the shortest digits that read back to the same
/// double, in positional form with at least one decimal (<c>2.0</c>, <c>0.0001</c>) unless its decimal exponent is below
/// -4 or at least 16 (<c>1e-05</c>, <c>1e+16</c>, <c>1.5e+300</c>); one too large for a double is <c>Infinity</c>.</item>
/// </list>
/// Text is read with <see cref="JsonDocument"/>, so what it refuses (comments, trailing commas, <c>NaN</c>) is refused
/// here, where Python would accept <c>NaN</c>; a string holding a lone surrogate escape cannot be read either.
/// </remarks>
public static class CanonicalJson
{
    /// <summary>The receipt member that holds its signature, left out of what is signed.</summary>
    public const string SignatureMember = "signature";

    private static readonly JsonDocumentOptions ReadOptions = new() { MaxDepth = 64 };

    /// <summary>The canonical form of a JSON text.</summary>
    /// <exception cref="JsonException">The text is not JSON.</exception>
    public static string Serialize(string json)
    {
        using var document = JsonDocument.Parse(json, ReadOptions);
        return Serialize(document.RootElement);
    }

    /// <summary>The canonical form of a parsed JSON value.</summary>
    public static string Serialize(JsonElement value)
    {
        var output = new StringBuilder();
        Write(output, value);
        return output.ToString();
    }

    /// <summary>
    /// The canonical form of a JSON value built in code. Integer CLR types are written as Python ints, <see cref="double"/>,
    /// <see cref="float"/> and <see cref="decimal"/> as Python floats (a decimal as the double its text reads as), so that
    /// <c>2.0m</c> is <c>2.0</c>. Nulls inside the value are written as <c>null</c>.
    /// </summary>
    public static string Serialize(JsonNode? value)
    {
        var output = new StringBuilder();
        Write(output, value);
        return output.ToString();
    }

    /// <summary>
    /// What a receipt's signature covers: the canonical form of the receipt object without its top-level
    /// <c>signature</c> and without its top-level members whose value is <c>null</c>.
    /// </summary>
    /// <remarks>
    /// Only top-level nulls are dropped: the receipt is a flat object and the spec says "null values dropped" of its
    /// members. The receipts the grid issues contain no null at any depth, so a verifier that drops nested nulls too
    /// rebuilds the same bytes from them.
    /// </remarks>
    /// <exception cref="ArgumentException">The value is not a JSON object.</exception>
    public static byte[] SignedBytesOfReceipt(JsonElement receipt)
    {
        if (receipt.ValueKind != JsonValueKind.Object) throw new ArgumentException("A receipt is a JSON object.", nameof(receipt));
        var output = new StringBuilder();
        WriteObject(output, LastOfEachKey(receipt, dropSignatureAndNulls: true));
        return Encoding.ASCII.GetBytes(output.ToString());
    }

    /// <inheritdoc cref="SignedBytesOfReceipt(JsonElement)"/>
    public static byte[] SignedBytesOfReceipt(JsonObject receipt)
    {
        var output = new StringBuilder();
        output.Append('{');
        var first = true;
        foreach (var (key, value) in receipt.Where(m => m.Key != SignatureMember && m.Value is not null).OrderBy(m => m.Key, CodePointOrder.Instance))
        {
            if (!first) output.Append(',');
            first = false;
            WriteString(output, key);
            output.Append(':');
            Write(output, value);
        }
        output.Append('}');
        return Encoding.ASCII.GetBytes(output.ToString());
    }

    private static void Write(StringBuilder output, JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                WriteObject(output, LastOfEachKey(value, dropSignatureAndNulls: false));
                break;
            case JsonValueKind.Array:
                output.Append('[');
                var first = true;
                foreach (var item in value.EnumerateArray())
                {
                    if (!first) output.Append(',');
                    first = false;
                    Write(output, item);
                }
                output.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(output, value.GetString()!);
                break;
            case JsonValueKind.Number:
                WriteNumber(output, value.GetRawText());
                break;
            case JsonValueKind.True:
                output.Append("true");
                break;
            case JsonValueKind.False:
                output.Append("false");
                break;
            default:
                output.Append("null");
                break;
        }
    }

    private static void Write(StringBuilder output, JsonNode? value)
    {
        switch (value)
        {
            case null:
                output.Append("null");
                break;
            case JsonObject members:
                output.Append('{');
                var first = true;
                foreach (var (key, member) in members.OrderBy(m => m.Key, CodePointOrder.Instance))
                {
                    if (!first) output.Append(',');
                    first = false;
                    WriteString(output, key);
                    output.Append(':');
                    Write(output, member);
                }
                output.Append('}');
                break;
            case JsonArray items:
                output.Append('[');
                for (var i = 0; i < items.Count; i++)
                {
                    if (i > 0) output.Append(',');
                    Write(output, items[i]);
                }
                output.Append(']');
                break;
            case JsonValue scalar:
                WriteScalar(output, scalar);
                break;
        }
    }

    private static void WriteScalar(StringBuilder output, JsonValue value)
    {
        if (value.TryGetValue<JsonElement>(out var element)) Write(output, element);
        else if (value.TryGetValue<string>(out var text)) WriteString(output, text);
        else if (value.TryGetValue<bool>(out var flag)) output.Append(flag ? "true" : "false");
        else if (value.TryGetValue<double>(out var number)) WriteDouble(output, number);
        else if (value.TryGetValue<float>(out var single)) WriteDouble(output, single);
        else if (value.TryGetValue<decimal>(out var exact)) WriteDouble(output, double.Parse(exact.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
        else
        {
            // Integers of every CLR type, and anything else System.Text.Json writes as a number or a string.
            using var document = JsonDocument.Parse(value.ToJsonString());
            Write(output, document.RootElement);
        }
    }

    /// <summary>An object's members as <c>json.loads</c> keeps them (the last value of a repeated key), sorted by code point.</summary>
    private static List<KeyValuePair<string, JsonElement>> LastOfEachKey(JsonElement value, bool dropSignatureAndNulls)
    {
        var members = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var member in value.EnumerateObject()) members[member.Name] = member.Value;
        var kept = dropSignatureAndNulls
            ? members.Where(m => m.Key != SignatureMember && m.Value.ValueKind != JsonValueKind.Null).ToList()
            : members.ToList();
        kept.Sort((a, b) => CodePointOrder.Instance.Compare(a.Key, b.Key));
        return kept;
    }

    private static void WriteObject(StringBuilder output, List<KeyValuePair<string, JsonElement>> members)
    {
        output.Append('{');
        for (var i = 0; i < members.Count; i++)
        {
            if (i > 0) output.Append(',');
            WriteString(output, members[i].Key);
            output.Append(':');
            Write(output, members[i].Value);
        }
        output.Append('}');
    }

    private static void WriteString(StringBuilder output, string text)
    {
        output.Append('"');
        foreach (var c in text)
        {
            switch (c)
            {
                case '"': output.Append("\\\""); break;
                case '\\': output.Append("\\\\"); break;
                case '\n': output.Append("\\n"); break;
                case '\r': output.Append("\\r"); break;
                case '\t': output.Append("\\t"); break;
                case '\b': output.Append("\\b"); break;
                case '\f': output.Append("\\f"); break;
                // A character beyond U+FFFF is two UTF-16 units here, each escaped: Python's surrogate pair.
                case < ' ' or > '~': output.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: output.Append(c); break;
            }
        }
        output.Append('"');
    }

    private static void WriteNumber(StringBuilder output, string raw)
    {
        if (raw.AsSpan().IndexOfAny('.', 'e', 'E') < 0)
        {
            output.Append(BigInteger.Parse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
            return;
        }
        // Parsing is correctly rounded (IEEE 754) since .NET Core 3.0, as Python's float() is; too large is ±Infinity.
        WriteDouble(output, double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    /// <summary>Python's <c>repr</c> of a float (<c>float_repr_style</c> "short").</summary>
    private static void WriteDouble(StringBuilder output, double value)
    {
        if (double.IsNaN(value)) { output.Append("NaN"); return; }
        if (double.IsInfinity(value)) { output.Append(value > 0 ? "Infinity" : "-Infinity"); return; }
        if (double.IsNegative(value)) output.Append('-');
        // "R" is the shortest text that reads back to the same double, the digits Python's repr chooses too; only the
        // layout differs (.NET switches to an exponent from 1E+15, Python from 1e+16).
        var shortest = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        var exponentAt = shortest.IndexOf('E', StringComparison.Ordinal);
        var mantissa = exponentAt < 0 ? shortest : shortest[..exponentAt];
        var exponent = exponentAt < 0 ? 0 : int.Parse(shortest.AsSpan(exponentAt + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        var point = mantissa.IndexOf('.', StringComparison.Ordinal);
        var digits = point < 0 ? mantissa : string.Concat(mantissa.AsSpan(0, point), mantissa.AsSpan(point + 1));
        // The value is 0.<digits> × 10^decimalPoint.
        var decimalPoint = (point < 0 ? mantissa.Length : point) + exponent;
        var leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        decimalPoint -= leadingZeros;
        if (digits.Length == 0)
        {
            output.Append("0.0");
            return;
        }
        if (decimalPoint is > -4 and <= 16)
        {
            if (decimalPoint <= 0) output.Append("0.").Append('0', -decimalPoint).Append(digits);
            else if (decimalPoint >= digits.Length) output.Append(digits).Append('0', decimalPoint - digits.Length).Append(".0");
            else output.Append(digits.AsSpan(0, decimalPoint)).Append('.').Append(digits.AsSpan(decimalPoint));
            return;
        }
        output.Append(digits[0]);
        if (digits.Length > 1) output.Append('.').Append(digits.AsSpan(1));
        var scientific = decimalPoint - 1;
        output.Append('e').Append(scientific < 0 ? '-' : '+').Append(Math.Abs(scientific).ToString("00", CultureInfo.InvariantCulture));
    }

    /// <summary>Strings in Unicode code point order, as Python compares <c>str</c>.</summary>
    private sealed class CodePointOrder : IComparer<string>
    {
        public static readonly CodePointOrder Instance = new();

        public int Compare(string? x, string? y)
        {
            var (a, b) = (x!, y!);
            var length = Math.Min(a.Length, b.Length);
            for (var i = 0; i < length; i++)
            {
                if (a[i] != b[i]) return CodePointRank(a[i]) - CodePointRank(b[i]);
            }
            return a.Length - b.Length;
        }

        /// <summary>
        /// Where a UTF-16 unit that differs first places its string in code point order: surrogates (a character beyond
        /// U+FFFF) after U+E000–U+FFFF, everything else where it is.
        /// </summary>
        private static int CodePointRank(char c) => c switch
        {
            >= '\uE000' => c - 0x800,
            >= '\uD800' => c + 0x2000,
            _ => c,
        };
    }
}
