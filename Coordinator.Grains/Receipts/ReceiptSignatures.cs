using System.Buffers.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using NSec.Cryptography;

namespace Coordinator.Grains.Receipts;

/// <summary>
/// Ed25519 signatures of receipts, as AITBC defines them: over the receipt's canonical JSON without <c>signature</c>
/// (<see cref="CanonicalJson.SignedBytesOfReceipt(JsonElement)"/>), carried in the receipt as
/// <c>"signature": {"alg": "Ed25519", "key_id": base64url(public key), "sig": base64url(signature)}</c>, base64url without
/// padding. Pure: keys come from the caller.
/// </summary>
public static class ReceiptSignatures
{
    /// <summary>The only <c>signature.alg</c>.</summary>
    public const string Algorithm = "Ed25519";

    private static readonly SignatureAlgorithm Ed25519 = SignatureAlgorithm.Ed25519;

    /// <summary>A key's <c>key_id</c>: its 32-byte public key, base64url without padding.</summary>
    public static string KeyIdOf(ReadOnlySpan<byte> publicKey) => Base64Url.EncodeToString(publicKey);

    /// <summary>
    /// Sets the receipt's <c>signature</c> (replacing any) to <paramref name="key"/>'s signature of the rest, and answers the
    /// signed receipt's canonical JSON text, the form it is stored and served in.
    /// </summary>
    public static SignedReceipt Sign(JsonObject receipt, Key key)
    {
        ArgumentNullException.ThrowIfNull(receipt);
        ArgumentNullException.ThrowIfNull(key);
        var keyId = KeyIdOf(key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
        var signature = Ed25519.Sign(key, CanonicalJson.SignedBytesOfReceipt(receipt));
        receipt[CanonicalJson.SignatureMember] = new JsonObject
        {
            ["alg"] = Algorithm,
            ["key_id"] = keyId,
            ["sig"] = Base64Url.EncodeToString(signature),
        };
        return new SignedReceipt(CanonicalJson.Serialize(receipt), keyId);
    }

    /// <summary>
    /// Checks a receipt's signature. Null when it is valid; otherwise why not: no signature, a malformed one, an algorithm
    /// other than Ed25519, a key <paramref name="publicKeyOf"/> does not know (it answers the 32-byte public key of a
    /// trusted <c>key_id</c>, or null), or a signature that does not match (the receipt was changed after signing).
    /// </summary>
    public static string? Verify(string receiptJson, Func<string, byte[]?> publicKeyOf)
    {
        ArgumentNullException.ThrowIfNull(publicKeyOf);
        return Verify(receiptJson, keyId => publicKeyOf(keyId) is { } raw && PublicKey.TryImport(Ed25519, raw, KeyBlobFormat.RawPublicKey, out var key) ? key : null);
    }

    /// <summary><see cref="Verify(string, Func{string, byte[]})"/> with keys already imported (a verifier that caches them).</summary>
    public static string? Verify(string receiptJson, Func<string, PublicKey?> publicKeyOf)
    {
        ArgumentNullException.ThrowIfNull(receiptJson);
        ArgumentNullException.ThrowIfNull(publicKeyOf);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(receiptJson);
        }
        catch (JsonException)
        {
            return "the receipt is not valid JSON";
        }
        using (document)
        {
            var receipt = document.RootElement;
            if (receipt.ValueKind != JsonValueKind.Object) return "the receipt is not a JSON object";
            if (LastMember(receipt, CanonicalJson.SignatureMember) is not { ValueKind: not JsonValueKind.Null } signature) return "the receipt has no signature";
            if (signature.ValueKind != JsonValueKind.Object) return "malformed signature: it is not an object";
            var alg = LastMember(signature, "alg");
            if (alg is not { ValueKind: JsonValueKind.String } || alg.Value.GetString() != Algorithm)
            {
                return $"unsupported signature algorithm {alg?.GetRawText() ?? "(none)"}: expected \"{Algorithm}\"";
            }
            if (LastMember(signature, "key_id") is not { ValueKind: JsonValueKind.String } keyIdElement) return "malformed signature: key_id is missing or not a string";
            if (LastMember(signature, "sig") is not { ValueKind: JsonValueKind.String } sigElement) return "malformed signature: sig is missing or not a string";
            var sig = new byte[Ed25519.SignatureSize];
            if (!Base64Url.TryDecodeFromChars(sigElement.GetString(), sig, out var written) || written != sig.Length)
            {
                return "malformed signature: sig is not a base64url Ed25519 signature (64 bytes)";
            }
            var keyId = keyIdElement.GetString()!;
            if (publicKeyOf(keyId) is not { } publicKey) return $"unknown signing key '{keyId}'";
            byte[] signed;
            try
            {
                signed = CanonicalJson.SignedBytesOfReceipt(receipt);
            }
            catch (InvalidOperationException)
            {
                // A string with a lone surrogate escape: Python would sign it, this reader cannot read it.
                return "the receipt contains a string that is not valid Unicode";
            }
            return Ed25519.Verify(publicKey, signed, sig) ? null : "signature mismatch: the receipt was changed after signing, or signed by another key";
        }
    }

    /// <summary>An object's member as <c>json.loads</c> keeps it: the last of a repeated name.</summary>
    private static JsonElement? LastMember(JsonElement value, string name)
    {
        JsonElement? found = null;
        foreach (var member in value.EnumerateObject())
        {
            if (member.NameEquals(name)) found = member.Value;
        }
        return found;
    }
}
