using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Coordinator.Grains.Receipts;

namespace Coordinator.Tests.Receipts;

/// <summary>Canonical JSON is byte for byte what Python's json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")) writes.</summary>
public sealed class CanonicalJsonTests
{
    private const string PythonCanonical = """
        import json, sys
        for line in sys.stdin.buffer.read().decode("utf-8").split("\n"):
            if line:
                print(json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")))
        """;

    [Fact]
    public async Task MatchesPython_OnAGeneratedCorpus()
    {
        var random = new Random(17);
        var corpus = Enumerable.Range(0, 10_000).Select(_ => new Generator(random).Document()).ToList();
        corpus.AddRange(FixedCases);

        var (exitCode, output, error) = await Python.RunAsync(string.Join('\n', corpus) + "\n", "-c", PythonCanonical);
        Assert.True(exitCode == 0, error);
        var expected = output.Split('\n')[..^1];
        Assert.Equal(corpus.Count, expected.Length);
        for (var i = 0; i < corpus.Count; i++)
        {
            var ours = CanonicalJson.Serialize(corpus[i]);
            Assert.True(expected[i] == ours, $"input: {corpus[i]}\npython: {expected[i]}\nours:   {ours}");
        }
    }

    private static readonly string[] FixedCases =
    [
        """[1e-05, 1e16, 1e15, 1.5e300, 0.1, 2.0, 0.0001, 0.00001, 123456789012345678, 1E400, -1E400, -0, -0.0, 0e0, 5e-324, 1.7976931348623157e308]""",
        """[2.5e-5, 1.0E+16, 9999999999999998.0, 1234567890123456.7, 0.30000000000000004, 100, 1e2, 1E2, -1.5E-7, 4.35, 1e22, 1e21]""",
        """{"b": 1, "a": 2, "a": 3, "\u0061": 4, "": 0}""",
        """{"\ud83d\ude00": "astral key", "\uffff": "BMP top", "\ue000": "private use", "z": "ascii", "\u00e9": "latin"}""",
        """["\u0000\u0001\u001f\u007f\u0080", "\"\\\/\b\f\n\r\t", "\u2028\u2029", "caf\u00e9 \u4e2d\u6587 \ud834\udd1e", "ünïcødé raw 中文 😀"]""",
        """{"nested": {"z": [1, {"y": null, "x": true}], "a": false}, "n": null}""",
        """  { "spaced" :  [ 1 ,  2 ] , "t" : true }  """,
        """123456789012345678901234567890123456789""",
        """-98765432109876543210""",
        "\"plain\"",
        "null",
    ];

    [Fact]
    public void Receipts_DropSignatureAndTopLevelNulls_KeepNestedNulls()
    {
        var text = """{"signature": {"sig": "x"}, "model": null, "b": {"c": null}, "a": 1.50}""";
        using var document = System.Text.Json.JsonDocument.Parse(text);
        Assert.Equal("""{"a":1.5,"b":{"c":null}}""", Encoding.ASCII.GetString(CanonicalJson.SignedBytesOfReceipt(document.RootElement)));
        var node = JsonNode.Parse(text)!.AsObject();
        Assert.Equal("""{"a":1.5,"b":{"c":null}}""", Encoding.ASCII.GetString(CanonicalJson.SignedBytesOfReceipt(node)));
    }

    [Fact]
    public void ValuesBuiltInCode_AreWrittenAsTheirTextWouldBeRead()
    {
        // Floating-point CLR types are Python floats even when whole; integer types are ints; a decimal is the double its text reads as.
        var receipt = new JsonObject
        {
            ["units"] = 2.000m, ["price"] = 0.0024m, ["whole"] = 2.0, ["tiny"] = 0.00001, ["count"] = 42L, ["small"] = 7,
            ["name"] = "modèle 😀", ["flag"] = true, ["list"] = new JsonArray(1, 2.5, "x"),
        };
        var canonical = CanonicalJson.Serialize(receipt);
        Assert.Equal("""{"count":42,"flag":true,"list":[1,2.5,"x"],"name":"mod\u00e8le \ud83d\ude00","price":0.0024,"small":7,"tiny":1e-05,"units":2.0,"whole":2.0}""", canonical);
        Assert.Equal(canonical, CanonicalJson.Serialize(canonical));
    }

    /// <summary>Random JSON texts, written with the freedoms JSON allows (escapes or raw characters, exponent forms, whitespace).</summary>
    private sealed class Generator(Random random)
    {
        private readonly StringBuilder _text = new();

        public string Document()
        {
            _text.Clear();
            Value(0);
            return _text.ToString();
        }

        private void Value(int depth)
        {
            switch (random.Next(depth < 4 ? 8 : 5))
            {
                case 0: Double(); break;
                case 1: Integer(); break;
                case 2: String(); break;
                case 3: _text.Append(random.Next(3) switch { 0 => "true", 1 => "false", _ => "null" }); break;
                case 4: Double(); break;
                case 5 or 6: Object(depth); break;
                default: Array(depth); break;
            }
        }

        private void Object(int depth)
        {
            _text.Append('{');
            var count = random.Next(6);
            var keys = new List<string>();
            for (var i = 0; i < count; i++)
            {
                if (i > 0) _text.Append(',');
                Space();
                // Now and then a key again: the last value wins.
                if (keys.Count > 0 && random.Next(8) == 0) WriteString(keys[random.Next(keys.Count)]);
                else
                {
                    var key = RandomText(random.Next(1, 6));
                    keys.Add(key);
                    WriteString(key);
                }
                Space();
                _text.Append(':');
                Space();
                Value(depth + 1);
            }
            _text.Append('}');
        }

        private void Array(int depth)
        {
            _text.Append('[');
            var count = random.Next(6);
            for (var i = 0; i < count; i++)
            {
                if (i > 0) _text.Append(',');
                Space();
                Value(depth + 1);
            }
            _text.Append(']');
        }

        private void Space()
        {
            if (random.Next(4) == 0) _text.Append(random.Next(2) == 0 ? " " : "\t ");
        }

        private void Integer()
        {
            _text.Append(random.Next(6) switch
            {
                0 => "-0",
                1 => random.NextInt64(long.MinValue, long.MaxValue).ToString(CultureInfo.InvariantCulture),
                2 => (random.Next(2) == 0 ? "-" : "") + random.Next(1, 10).ToString(CultureInfo.InvariantCulture) + string.Concat(Enumerable.Range(0, random.Next(15, 40)).Select(_ => (char)('0' + random.Next(10)))),
                _ => random.Next(-1000, 1000).ToString(CultureInfo.InvariantCulture),
            });
        }

        private void Double()
        {
            double value;
            do
            {
                value = random.Next(6) switch
                {
                    // Any bit pattern: subnormals, huge and tiny magnitudes.
                    0 or 1 => BitConverter.Int64BitsToDouble(random.NextInt64(long.MinValue, long.MaxValue)),
                    2 => BitConverter.Int64BitsToDouble(random.NextInt64(1, 1L << 52)),
                    3 => Math.Round(random.NextDouble() * Math.Pow(10, random.Next(-8, 20)), random.Next(0, 8)),
                    4 => random.Next(-100, 100) * Math.Pow(10, random.Next(-30, 30)),
                    _ => random.Next(-5, 5) / 4.0,
                };
            }
            while (!double.IsFinite(value));
            var shortest = value.ToString("R", CultureInfo.InvariantCulture);
            if (shortest.IndexOfAny(['.', 'E']) < 0) shortest += random.Next(2) == 0 ? ".0" : ".000";
            _text.Append(random.Next(4) switch
            {
                0 => value.ToString("E16", CultureInfo.InvariantCulture),
                // A three-digit exponent without its sign: 1.234e005.
                1 => value.ToString("e3", CultureInfo.InvariantCulture).Replace("e+", "e", StringComparison.Ordinal),
                2 => shortest.Replace('E', 'e'),
                _ => shortest,
            });
        }

        private void String() => WriteString(RandomText(random.Next(0, 12)));

        private string RandomText(int length)
        {
            var text = new StringBuilder();
            for (var i = 0; i < length; i++)
            {
                text.Append(random.Next(10) switch
                {
                    0 => ((char)random.Next(0, 0x20)).ToString(),
                    1 => "\"\\/\u007f"[random.Next(4)].ToString(),
                    2 => char.ConvertFromUtf32(random.Next(0x10000, 0x110000)),
                    3 => ((char)random.Next(0xE000, 0x10000)).ToString(),
                    4 => ((char)random.Next(0x80, 0xD800)).ToString(),
                    5 => "\u2028",
                    _ => ((char)random.Next(0x20, 0x7f)).ToString(),
                });
            }
            return text.ToString();
        }

        /// <summary>A JSON string: each character raw where JSON allows it, or escaped (\uXXXX, upper or lower case, a surrogate pair for one beyond U+FFFF, or its short escape).</summary>
        private void WriteString(string value)
        {
            _text.Append('"');
            foreach (var rune in value.EnumerateRunes())
            {
                var mustEscape = rune.Value < 0x20 || rune.Value == '"' || rune.Value == '\\';
                if (!mustEscape && random.Next(3) != 0)
                {
                    _text.Append(rune.ToString());
                    continue;
                }
                _text.Append(rune.Value switch
                {
                    '"' => "\\\"",
                    '\\' => "\\\\",
                    '\n' when random.Next(2) == 0 => "\\n",
                    '/' => "\\/",
                    _ => string.Concat(rune.ToString().Select(c => "\\u" + ((int)c).ToString(random.Next(2) == 0 ? "x4" : "X4", CultureInfo.InvariantCulture))),
                });
            }
            _text.Append('"');
        }
    }
}
