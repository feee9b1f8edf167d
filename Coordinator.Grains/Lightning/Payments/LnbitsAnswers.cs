using System.Text.Json;

namespace Coordinator.Grains.Lightning.Payments;

/// <summary>
/// Reads LNbits' answers to <c>/api/v1/payments</c>, across the versions in use. Before 1.0 creating an invoice answered
/// <c>{payment_hash, payment_request, checking_id, lnurl_response}</c> and paying <c>{payment_hash, checking_id}</c>; since
/// 1.0 both answer the whole Payment object (<c>payment_hash</c>, <c>bolt11</c>, <c>payment_request</c>, <c>status</c> of
/// pending/success/failed, <c>amount</c> in millisatoshis, negative when outgoing). <c>GET /api/v1/payments/{hash}</c>
/// answers <c>{"paid": bool, …}</c> in all of them. Errors are FastAPI's <c>{"detail": "…"}</c>.
/// </summary>
internal static class LnbitsAnswers
{
    private const int MaxDetailLength = 200;

    public static LightningInvoice Invoice(JsonElement body, long amountSats)
    {
        var paymentHash = Text(body, "payment_hash");
        var paymentRequest = Text(body, "payment_request") ?? Text(body, "bolt11");
        if (paymentHash is null || paymentRequest is null)
        {
            throw Malformed("the new invoice has no payment_hash and payment_request (or bolt11)");
        }
        return new LightningInvoice(paymentHash, paymentRequest, amountSats);
    }

    public static bool Paid(JsonElement body) =>
        body.ValueKind == JsonValueKind.Object && body.TryGetProperty("paid", out var paid) && paid.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? paid.GetBoolean()
            : throw Malformed("the payment's status has no paid field");

    /// <summary>
    /// An outgoing payment read back (<c>GET /api/v1/payments/{hash}</c>): <c>paid</c> true is settled; since 1.0
    /// <c>status</c> says failed or pending; before it an unpaid outgoing payment is pending (a failed one was deleted: 404).
    /// </summary>
    public static OutgoingPaymentStatus Outgoing(JsonElement body) => Paid(body)
        ? OutgoingPaymentStatus.Succeeded
        : Text(body, "status") == "failed" ? OutgoingPaymentStatus.Failed : OutgoingPaymentStatus.Pending;

    /// <summary>The payment the node accepted; one it reports as failed is a <see cref="LightningException"/>.</summary>
    public static LightningPayment Payment(JsonElement body, long expectedAmountSats)
    {
        var paymentHash = Text(body, "payment_hash") ?? Text(body, "checking_id")
            ?? throw Malformed("the payment has no payment_hash");
        // Before 1.0 there is no status: a failed payment was an error answer, so an answer is a payment that went out.
        var status = Text(body, "status");
        if (status == "failed") throw new LightningException("The Lightning node could not pay the invoice: the payment failed.", nodeAnswered: true);
        var amountSats = body.TryGetProperty("amount", out var amount) && amount.TryGetInt64(out var millisats)
            ? Math.Abs(millisats) / 1000
            : expectedAmountSats;
        return new LightningPayment(paymentHash, amountSats, IsPending: status == "pending");
    }

    /// <summary>
    /// What an error answer says, for a client to read: FastAPI's <c>detail</c> (a string, or a list of validation errors
    /// with <c>msg</c>), else a <c>message</c>; cut short, and null when the body says nothing readable.
    /// </summary>
    public static string? Detail(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            var detail = Text(root, "detail") ?? Text(root, "message");
            if (detail is null && root.ValueKind == JsonValueKind.Object && root.TryGetProperty("detail", out var list)
                && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() > 0)
            {
                detail = Text(list[0], "msg");
            }
            if (detail is null || detail.Length <= MaxDetailLength) return detail;
            // Not between the two halves of a surrogate pair.
            var cut = char.IsHighSurrogate(detail[MaxDetailLength - 1]) ? MaxDetailLength - 1 : MaxDetailLength;
            return detail[..cut] + "…";
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static LightningException Malformed(string what, Exception? inner = null) =>
        new($"The Lightning node answered something that is not LNbits' API: {what}.", inner);

    private static string? Text(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            && value.GetString() is { Length: > 0 } text
            ? text
            : null;
}
