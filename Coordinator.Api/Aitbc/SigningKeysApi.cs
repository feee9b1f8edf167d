using System.Buffers.Text;
using Coordinator.Grains.Receipts;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Api.Aitbc;

/// <summary>
/// <c>GET /v1/signing-keys</c> on the AITBC port: the coordinator's receipt signing keys, active and retired, public, so
/// that anyone can verify a receipt without trusting us (a receipt's <c>signature.key_id</c> is one of these keys).
/// </summary>
public static class SigningKeysApi
{
    public static RouteGroupBuilder MapSigningKeys(this RouteGroupBuilder aitbc)
    {
        aitbc.MapGet("/v1/signing-keys", ListAsync);
        return aitbc;
    }

    /// <summary>The keys; the grid's first key is made here if no receipt has been signed yet, so the list is never empty.</summary>
    public static async Task<Ok<List<SigningKeyDto>>> ListAsync(ReceiptSigningKeys keys, CancellationToken cancellationToken)
    {
        await keys.GetOrCreateActiveAsync(cancellationToken);
        return TypedResults.Ok((await keys.ListAsync(cancellationToken)).Select(key => new SigningKeyDto(
            key.KeyId, ReceiptSignatures.Algorithm, Base64Url.EncodeToString(key.PublicKey), key.CreatedAt, key.RetiredAt, key.Active)).ToList());
    }
}

/// <summary>A published receipt signing key; <c>public_key</c> is base64url without padding (equal to <c>key_id</c>).</summary>
public sealed record SigningKeyDto(string KeyId, string Alg, string PublicKey, DateTime CreatedAt, DateTime? RetiredAt, bool Active);
