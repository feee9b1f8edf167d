using System.Buffers.Text;
using System.Text.Json.Nodes;
using Coordinator.Grains.Receipts;
using NSec.Cryptography;

namespace Coordinator.Tests.Receipts;

/// <summary>Receipts signed by our code verify in Python (python3-cryptography) and in C#; any change after signing fails both.</summary>
public sealed class ReceiptSignatureTests : IDisposable
{
    private readonly Key _key = Key.Create(SignatureAlgorithm.Ed25519);

    private string KeyId => ReceiptSignatures.KeyIdOf(_key.PublicKey.Export(KeyBlobFormat.RawPublicKey));

    private byte[]? PublicKeyOf(string keyId) => keyId == KeyId ? _key.PublicKey.Export(KeyBlobFormat.RawPublicKey) : null;

    public void Dispose() => _key.Dispose();

    private static JsonObject Receipt(string model, decimal units, decimal price) => new()
    {
        ["receipt_id"] = "rcpt_" + Guid.NewGuid().ToString("N")[..26],
        ["job_id"] = "42",
        ["provider"] = "miner-ä",
        ["client"] = "account-7",
        ["units"] = units,
        ["unit_type"] = "gpu_seconds",
        ["price"] = price,
        ["model"] = model,
        ["started_at"] = 1_700_000_000L,
        ["completed_at"] = 1_700_000_002L,
    };

    [Fact]
    public async Task SignedReceipts_VerifyInPythonAndCSharp_WithUnicodeAndAwkwardNumbers()
    {
        JsonObject[] receipts =
        [
            Receipt("llama3.2", 1.234m, 0.02468m),
            Receipt("modèle-中文-😀 \"quoted\" \\ back\tslash", 2.000m, 0.04m),
            Receipt("\u007f\u2028\uffff\ue000 DEL", 0.001m, 0.00002m),
            Receipt("big", 123456789.123m, 2469135.78246m),
            Receipt("tiny", 0m, 0m),
        ];
        var signed = receipts.Select(r => ReceiptSignatures.Sign(r, _key)).ToList();

        Assert.All(signed, s => Assert.Equal(KeyId, s.KeyId));
        Assert.All(signed, s => Assert.Null(ReceiptSignatures.Verify(s.Json, PublicKeyOf)));
        // The stored text is canonical: ASCII only, and what a re-serialisation gives.
        Assert.All(signed, s => Assert.True(s.Json.All(char.IsAscii)));
        Assert.All(signed, s => Assert.Equal(s.Json, CanonicalJson.Serialize(s.Json)));
        Assert.Equal(Enumerable.Repeat("ok", signed.Count), await Python.VerifyAsync("[" + string.Join(',', signed.Select(s => s.Json)) + "]", KeyId));
    }

    [Fact]
    public async Task TamperedReceipts_FailInPythonAndCSharp_ReorderedOrRespacedOnesStillVerify()
    {
        var original = ReceiptSignatures.Sign(Receipt("llama3.2", 1.5m, 0.03m), _key).Json;
        var other = ReceiptSignatures.Sign(Receipt("llama3.2", 9m, 0.18m), _key).Json;

        var priced = JsonNode.Parse(original)!.AsObject();
        priced["price"] = 0.0301m;
        var provided = JsonNode.Parse(original)!.AsObject();
        provided["provider"] = "someone-else";
        var swapped = JsonNode.Parse(original)!.AsObject();
        swapped["signature"] = JsonNode.Parse(other)!["signature"]!.DeepClone();
        var reordered = new JsonObject(JsonNode.Parse(original)!.AsObject().Reverse().Select(m => KeyValuePair.Create(m.Key, m.Value?.DeepClone())));
        var respaced = reordered.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        var nullAdded = JsonNode.Parse(original)!.AsObject();
        nullAdded["comment"] = null;

        string[] tampered = [priced.ToJsonString(), provided.ToJsonString(), swapped.ToJsonString()];
        string[] equivalent = [reordered.ToJsonString(), respaced, nullAdded.ToJsonString()];

        Assert.All(tampered, t => Assert.StartsWith("signature mismatch", ReceiptSignatures.Verify(t, PublicKeyOf)));
        Assert.All(equivalent, e => Assert.Null(ReceiptSignatures.Verify(e, PublicKeyOf)));
        var verdicts = await Python.VerifyAsync("[" + string.Join(',', tampered.Concat(equivalent)) + "]", KeyId);
        Assert.All(verdicts.Take(3), v => Assert.StartsWith("bad: signature mismatch", v));
        Assert.All(verdicts.Skip(3), v => Assert.Equal("ok", v));
    }

    [Fact]
    public void Verify_SaysWhyAReceiptIsNotValid()
    {
        var signed = JsonNode.Parse(ReceiptSignatures.Sign(Receipt("m", 1m, 0.02m), _key).Json)!.AsObject();
        string With(Action<JsonObject> change)
        {
            var copy = signed.DeepClone().AsObject();
            change(copy);
            return copy.ToJsonString();
        }

        Assert.Equal("the receipt is not valid JSON", ReceiptSignatures.Verify("{\"a\":", PublicKeyOf));
        Assert.Equal("the receipt is not a JSON object", ReceiptSignatures.Verify("[1]", PublicKeyOf));
        Assert.Equal("the receipt has no signature", ReceiptSignatures.Verify(With(r => r.Remove("signature")), PublicKeyOf));
        Assert.Equal("the receipt has no signature", ReceiptSignatures.Verify(With(r => r["signature"] = null), PublicKeyOf));
        Assert.StartsWith("malformed signature", ReceiptSignatures.Verify(With(r => r["signature"] = "x"), PublicKeyOf));
        Assert.StartsWith("unsupported signature algorithm \"RS256\"", ReceiptSignatures.Verify(With(r => r["signature"]!["alg"] = "RS256"), PublicKeyOf));
        Assert.StartsWith("malformed signature: sig", ReceiptSignatures.Verify(With(r => r["signature"]!["sig"] = "AAAA"), PublicKeyOf));
        Assert.StartsWith("malformed signature: key_id", ReceiptSignatures.Verify(With(r => r["signature"]!["key_id"] = 5), PublicKeyOf));
        using var stranger = Key.Create(SignatureAlgorithm.Ed25519);
        var strangerId = ReceiptSignatures.KeyIdOf(stranger.PublicKey.Export(KeyBlobFormat.RawPublicKey));
        Assert.Equal($"unknown signing key '{strangerId}'", ReceiptSignatures.Verify(ReceiptSignatures.Sign(Receipt("m", 1m, 0.02m), stranger).Json, PublicKeyOf));
        Assert.Null(ReceiptSignatures.Verify(signed.ToJsonString(), PublicKeyOf));
    }

    [Fact]
    public void Signature_IsTheSpecsShape()
    {
        var signed = JsonNode.Parse(ReceiptSignatures.Sign(Receipt("m", 1m, 0.02m), _key).Json)!["signature"]!.AsObject();
        Assert.Equal(["alg", "key_id", "sig"], signed.Select(m => m.Key));
        Assert.Equal("Ed25519", signed["alg"]!.GetValue<string>());
        Assert.Equal(KeyId, signed["key_id"]!.GetValue<string>());
        var sig = signed["sig"]!.GetValue<string>();
        Assert.DoesNotContain('=', sig + KeyId);
        Assert.Equal(64, Base64Url.DecodeFromChars(sig).Length);
        Assert.Equal(32, Base64Url.DecodeFromChars(KeyId).Length);
    }
}
