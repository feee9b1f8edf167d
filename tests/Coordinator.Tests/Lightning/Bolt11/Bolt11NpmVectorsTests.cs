using System.Globalization;
using System.Text.Json;
using Coordinator.Grains.Lightning.Bolt11;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>
/// The decoder against the npm <c>bolt11</c> package, both ways: invoices bolt11 signs (random keys, networks, amounts,
/// descriptions, expiries, payee fields and route hints) decode here to what bolt11 decodes, and invoices the encoder
/// signs decode in bolt11, signature checked, to what was asked.
/// </summary>
public sealed class Bolt11NpmVectorsTests
{
    private const int Count = 200;

    [Fact]
    public async Task InvoicesSignedByNpmBolt11_DecodeToTheFieldsItDecodes()
    {
        var vectors = await Bolt11Npm.SignAsync(Count);
        Assert.Equal(Count, vectors.GetArrayLength());
        foreach (var vector in vectors.EnumerateArray())
        {
            var input = vector.GetProperty("input");
            var expected = vector.GetProperty("decoded");
            var text = expected.GetProperty("paymentRequest").GetString()!;
            // bolt11 read back what it was asked to write, so the vector says something.
            Assert.Equal(input.GetProperty("paymentHash").GetString(), expected.GetProperty("paymentHash").GetString());
            Assert.Equal(input.GetProperty("payeeNodeKey").GetString(), expected.GetProperty("payeeNodeKey").GetString());

            Assert.True(Bolt11Decoder.TryDecode(text, out var invoice, out var error), $"{error}: {text}");
            Assert.Equal(expected.GetProperty("network").GetString(), invoice.Network.Prefix());
            Assert.Equal(Long(expected, "millisatoshis"), invoice.AmountMsat);
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(expected.GetProperty("timestamp").GetInt64()), invoice.Timestamp);
            Assert.Equal(expected.GetProperty("payeeNodeKey").GetString(), invoice.PayeeNodeKey);
            Assert.Equal(expected.GetProperty("paymentHash").GetString(), invoice.PaymentHash);
            Assert.Equal(expected.GetProperty("paymentSecret").GetString(), invoice.PaymentSecret);
            Assert.Equal(expected.GetProperty("description").GetString(), invoice.Description);
            Assert.Equal(expected.GetProperty("descriptionHash").GetString(), invoice.DescriptionHash);
            Assert.Equal(TimeSpan.FromSeconds(Long(expected, "expireTime") ?? 3600), invoice.Expiry);
            Assert.Equal(Long(expected, "minFinalCltvExpiry") ?? 18, invoice.MinFinalCltvExpiry);
        }
    }

    [Fact]
    public async Task InvoicesOfTheEncoder_DecodeInNpmBolt11_AndHere_ToWhatWasAsked()
    {
        var random = new TestInvoices(seed: 11);
        // The last has the longest description there can be (639 UTF-8 bytes): over 1023 characters, where bech32
        // stops guaranteeing to catch errors but BOLT11 still uses it.
        var requests = Enumerable.Range(0, Count - 1).Select(_ => random.NewRequest())
            .Append(random.NewRequest() with { Description = string.Concat(Enumerable.Repeat("☕", 213)), DescriptionHash = null })
            .ToList();
        var made = requests.Select(request =>
        {
            using var key = random.NewKey();
            return (Request: request, Payee: key.PubKey.ToHex(), Text: Bolt11Encoder.Encode(request, key));
        }).ToList();
        Assert.True(made[^1].Text.Length > 1023, made[^1].Text);

        var results = (await Bolt11Npm.DecodeAsync(made.Select(m => m.Text))).EnumerateArray().ToList();
        Assert.Equal(Count, results.Count);
        for (var i = 0; i < Count; i++)
        {
            var (request, payee, text) = made[i];
            Assert.True(results[i].GetProperty("ok").GetBoolean(), $"{results[i]}: {text}");
            var decoded = results[i].GetProperty("decoded");
            Assert.Equal(request.Network.Prefix(), decoded.GetProperty("network").GetString());
            Assert.Equal(request.AmountMsat, Long(decoded, "millisatoshis"));
            Assert.Equal(request.Timestamp.ToUnixTimeSeconds(), decoded.GetProperty("timestamp").GetInt64());
            Assert.Equal(payee, decoded.GetProperty("payeeNodeKey").GetString());
            Assert.Equal(request.IncludePayeeNodeKey ? payee : null, decoded.GetProperty("payeeNodeKeyTag").GetString());
            Assert.Equal(request.PaymentHash, decoded.GetProperty("paymentHash").GetString());
            Assert.Equal(request.PaymentSecret, decoded.GetProperty("paymentSecret").GetString());
            Assert.Equal(request.DescriptionHash is null ? request.Description : null, decoded.GetProperty("description").GetString());
            Assert.Equal(request.DescriptionHash, decoded.GetProperty("descriptionHash").GetString());
            Assert.Equal((long?)request.Expiry?.TotalSeconds, Long(decoded, "expireTime"));
            Assert.Equal(request.MinFinalCltvExpiry, Long(decoded, "minFinalCltvExpiry"));

            Assert.True(Bolt11Decoder.TryDecode(text, out var invoice, out var error), $"{error}: {text}");
            Assert.Equal(request.Network, invoice.Network);
            Assert.Equal(request.AmountMsat, invoice.AmountMsat);
            Assert.Equal(request.Timestamp, invoice.Timestamp);
            Assert.Equal(payee, invoice.PayeeNodeKey);
            Assert.Equal(request.PaymentHash, invoice.PaymentHash);
            Assert.Equal(request.PaymentSecret, invoice.PaymentSecret);
            Assert.Equal(request.DescriptionHash is null ? request.Description ?? "" : null, invoice.Description);
            Assert.Equal(request.DescriptionHash, invoice.DescriptionHash);
            Assert.Equal(request.Expiry ?? TimeSpan.FromSeconds(3600), invoice.Expiry);
            Assert.Equal(request.MinFinalCltvExpiry, invoice.MinFinalCltvExpiry);
        }
    }

    /// <summary>A JSON number, or a string of digits (bolt11 writes millisatoshis as a string), or null.</summary>
    private static long? Long(JsonElement element, string name) => element.GetProperty(name) switch
    {
        { ValueKind: JsonValueKind.Null } => null,
        { ValueKind: JsonValueKind.String } text => long.Parse(text.GetString()!, CultureInfo.InvariantCulture),
        var number => number.GetInt64(),
    };
}
