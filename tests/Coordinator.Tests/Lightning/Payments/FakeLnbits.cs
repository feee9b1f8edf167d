using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>Which LNbits answers <see cref="FakeLnbits"/> gives: 1.x's Payment objects, or the smaller bodies before 1.0.</summary>
public enum FakeLnbitsVersion
{
    /// <summary>
    /// LNbits 1.x: creating and paying answer the Payment object (<c>payment_hash</c>, <c>bolt11</c>, <c>payment_request</c>,
    /// <c>status</c>, <c>amount</c> in millisatoshis, negative when outgoing); paying with the invoice key is 403.
    /// </summary>
    Current,

    /// <summary>
    /// LNbits 0.x: creating answers <c>{payment_hash, payment_request, checking_id, lnurl_response}</c>, paying
    /// <c>{payment_hash, checking_id}</c>; paying with the invoice key is 401.
    /// </summary>
    Legacy,
}

/// <summary>What an outgoing payment does at <see cref="FakeLnbits"/>.</summary>
public enum FakeLnbitsPayOutcome
{
    Succeed,

    /// <summary>In flight (1.x answers <c>status: pending</c>; 0.x cannot say so and answers as for a success).</summary>
    StayPending,

    /// <summary>LNbits' answer to a payment its funding source could not make: 520 with a <c>detail</c>.</summary>
    Fail,

    /// <summary>Pays, then never answers: the payment went out but its answer is lost, and the caller times out.</summary>
    PayWithoutAnswer,

    /// <summary>Never answers and pays nothing, as a request lost on its way would.</summary>
    HangWithoutPaying,
}

/// <summary>An invoice <see cref="FakeLnbits"/> made.</summary>
public sealed record FakeLnbitsInvoice(string PaymentHash, string PaymentRequest, long AmountSats, string Memo, bool Paid);

/// <summary>An outgoing payment <see cref="FakeLnbits"/> made: the invoice, the amount it read from it, and the hash it answered.</summary>
public sealed record FakeLnbitsPayment(string PaymentHash, string Bolt11, long AmountSats);

/// <summary>
/// An LNbits wallet on loopback speaking LNbits' wire format for <c>/api/v1/payments</c> (lnbits/core/views/payment_api.py,
/// lnbits/decorators.py): the wallet key in <c>X-Api-Key</c>, JSON bodies with snake_case fields, FastAPI's
/// <c>{"detail": "…"}</c> errors. A missing key is 400 and an unknown one 401; the invoice key (or the admin key) creates
/// invoices (<c>out: false</c>, 201), only the admin key pays (<c>out: true</c>, 201). <c>GET /api/v1/payments/{hash}</c>
/// answers <c>{"paid": …}</c> for an invoice or an outgoing payment (1.x adds <c>status</c>: pending, success or failed;
/// 0.x drops a failed payment, 404), or 404; like LNbits it needs no key there, and a key only adds the payment's details.
/// Paying reads the amount and payment hash from the BOLT11 (see <see cref="FakeBolt11"/>); an invoice without an amount is 400.
/// </summary>
public sealed class FakeLnbits : IAsyncDisposable
{
    public const string InvoiceKey = "fake0invoice0key0000000000000000";
    public const string AdminKey = "fake0admin0key000000000000000000";
    public const string WalletId = "f4kewa11e7";

    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, FakeLnbitsInvoice> _invoices = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<FakeLnbitsPayment> _payments = new();
    private readonly ConcurrentDictionary<string, string> _outgoing = new(StringComparer.Ordinal);
    private int _requests;

    private FakeLnbits(WebApplication app) => _app = app;

    public Uri BaseAddress { get; private set; } = null!;

    public FakeLnbitsVersion Version { get; set; } = FakeLnbitsVersion.Current;

    public FakeLnbitsPayOutcome PayOutcome { get; set; } = FakeLnbitsPayOutcome.Succeed;

    /// <summary>Close it to make the wallet hang: requests wait until it opens again.</summary>
    public RequestGate Gate { get; } = new();

    /// <summary>Requests received, answered or not.</summary>
    public int Requests => Volatile.Read(ref _requests);

    public IReadOnlyCollection<FakeLnbitsInvoice> Invoices => _invoices.Values.ToList();

    /// <summary>Outgoing payments in the order they were made.</summary>
    public IReadOnlyCollection<FakeLnbitsPayment> Payments =>
        _payments.Where(p => _outgoing.GetValueOrDefault(p.PaymentHash) != "failed").ToList();

    /// <summary>A payment in flight (<see cref="FakeLnbitsPayOutcome.StayPending"/>) settles, or fails and is no payment.</summary>
    public void SettleOutgoing(string paymentHash, bool succeeded) => _outgoing[paymentHash] = succeeded ? "success" : "failed";

    public static async Task<FakeLnbits> StartAsync()
    {
        var builder = Loopback.CreateBuilder();
        var app = builder.Build();
        var fake = new FakeLnbits(app);
        app.MapPost("/api/v1/payments", (Delegate)fake.CreateOrPayAsync);
        app.MapGet("/api/v1/payments/{paymentHash}", (Delegate)fake.CheckAsync);
        await app.StartAsync();
        fake.BaseAddress = new Uri(Loopback.AddressOf(app));
        return fake;
    }

    /// <summary>The payer's side: marks the invoice paid. Answers whether this wallet made it.</summary>
    public bool MarkPaid(string paymentHash) =>
        _invoices.TryGetValue(paymentHash, out var invoice) && _invoices.TryUpdate(paymentHash, invoice with { Paid = true }, invoice);

    private async Task<IResult> CreateOrPayAsync(HttpContext context)
    {
        await ArriveAsync(context);
        var keyType = KeyType(context);
        if (keyType is null)
        {
            return context.Request.Headers.ContainsKey("X-Api-Key") ? Detail(401, "Invalid key or expired key.") : Detail(400, "`X-API-KEY` header missing.");
        }
        JsonElement body;
        try
        {
            using var document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
            body = document.RootElement.Clone();
        }
        catch (JsonException)
        {
            return Detail(422, "JSON decode error");
        }
        // LNbits' CreateInvoice defaults out to true.
        var outgoing = !body.TryGetProperty("out", out var outField) || outField.ValueKind != JsonValueKind.False;
        if (!outgoing) return CreateInvoice(body);
        if (keyType != "admin") return Detail(Version == FakeLnbitsVersion.Current ? 403 : 401, "Invoice (or Admin) key required.");
        return await PayAsync(body, context);
    }

    private IResult CreateInvoice(JsonElement body)
    {
        if (!body.TryGetProperty("amount", out var amountField) || !amountField.TryGetInt64(out var amount) || amount < 0)
        {
            return Detail(422, "amount: value is not a valid integer");
        }
        if (body.TryGetProperty("unit", out var unit) && unit.GetString() != "sat") return Detail(400, "The provided unit is not supported");
        var memo = body.TryGetProperty("memo", out var memoField) ? memoField.GetString() ?? "" : "";
        var paymentHash = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var invoice = new FakeLnbitsInvoice(paymentHash, FakeBolt11.Make(amount, paymentHash), amount, memo, Paid: false);
        _invoices[paymentHash] = invoice;
        var checkingId = paymentHash;
        return Version == FakeLnbitsVersion.Legacy
            ? Results.Json(new Dictionary<string, object?>
            {
                ["payment_hash"] = paymentHash, ["payment_request"] = invoice.PaymentRequest, ["checking_id"] = checkingId, ["lnurl_response"] = null,
            }, statusCode: 201)
            : Results.Json(PaymentObject(paymentHash, invoice.PaymentRequest, amount * 1000, "pending", memo), statusCode: 201);
    }

    private async Task<IResult> PayAsync(JsonElement body, HttpContext context)
    {
        var bolt11 = body.TryGetProperty("bolt11", out var bolt11Field) ? bolt11Field.GetString() : null;
        if (string.IsNullOrEmpty(bolt11)) return Detail(400, "Missing BOLT11 invoice");
        if (FakeBolt11.AmountMsat(bolt11) is not { } amountMsat || FakeBolt11.PaymentHash(bolt11) is not { } paymentHash)
        {
            return Detail(400, FakeBolt11.PaymentHash(bolt11) is null ? "Bolt11 decoding failed." : "Amountless invoices not supported.");
        }
        switch (PayOutcome)
        {
            case FakeLnbitsPayOutcome.Fail:
                // 1.x keeps the failed payment; 0.x deletes it.
                if (Version == FakeLnbitsVersion.Current) _outgoing[paymentHash] = "failed";
                return Detail(520, "Payment failed: no route found.");
            case FakeLnbitsPayOutcome.HangWithoutPaying:
                return await HangAsync(context);
        }
        // Like LNbits, an invoice whose payment failed may be paid again; one paid or in flight may not.
        var status = PayOutcome == FakeLnbitsPayOutcome.StayPending ? "pending" : "success";
        if (!_outgoing.TryAdd(paymentHash, status) && !_outgoing.TryUpdate(paymentHash, status, "failed"))
        {
            return Detail(400, "Invoice already paid.");
        }
        _payments.Enqueue(new FakeLnbitsPayment(paymentHash, bolt11, amountMsat / 1000));
        if (PayOutcome == FakeLnbitsPayOutcome.PayWithoutAnswer) return await HangAsync(context);
        return Version == FakeLnbitsVersion.Legacy
            ? Results.Json(new Dictionary<string, object?> { ["payment_hash"] = paymentHash, ["checking_id"] = paymentHash }, statusCode: 201)
            : Results.Json(PaymentObject(paymentHash, bolt11, -amountMsat, PayOutcome == FakeLnbitsPayOutcome.StayPending ? "pending" : "success", ""),
                statusCode: 201);
    }

    private async Task<IResult> CheckAsync(HttpContext context, string paymentHash)
    {
        await ArriveAsync(context);
        if (_outgoing.TryGetValue(paymentHash, out var status))
        {
            if (status == "failed" && Version == FakeLnbitsVersion.Legacy) return Detail(404, "Payment does not exist.");
            var sent = new Dictionary<string, object?> { ["paid"] = status == "success", ["preimage"] = null };
            if (Version == FakeLnbitsVersion.Current) sent["status"] = status;
            return Results.Json(sent);
        }
        if (!_invoices.TryGetValue(paymentHash, out var invoice)) return Detail(404, "Payment does not exist.");
        var answer = new Dictionary<string, object?> { ["paid"] = invoice.Paid, ["preimage"] = invoice.Paid ? new string('0', 64) : null };
        if (!invoice.Paid && Version == FakeLnbitsVersion.Current) answer["status"] = "pending";
        if (KeyType(context) is not null)
        {
            answer["details"] = PaymentObject(invoice.PaymentHash, invoice.PaymentRequest, invoice.AmountSats * 1000, invoice.Paid ? "success" : "pending", invoice.Memo);
        }
        return Results.Json(answer);
    }

    /// <summary>Answers nothing until the caller gives up or the fake stops.</summary>
    private async Task<IResult> HangAsync(HttpContext context)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping.Token);
        await Task.Delay(Timeout.Infinite, either.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        return Results.Empty;
    }

    private async Task ArriveAsync(HttpContext context)
    {
        Interlocked.Increment(ref _requests);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping.Token);
        await Gate.PassAsync(either.Token);
    }

    // The admin key is also an invoice key, as in LNbits.
    private static string? KeyType(HttpContext context) => context.Request.Headers["X-Api-Key"].ToString() switch
    {
        AdminKey => "admin",
        InvoiceKey => "invoice",
        _ => null,
    };

    private static Dictionary<string, object?> PaymentObject(string paymentHash, string bolt11, long amountMsat, string status, string memo) => new()
    {
        ["checking_id"] = paymentHash, ["payment_hash"] = paymentHash, ["wallet_id"] = WalletId, ["amount"] = amountMsat, ["fee"] = 0,
        ["bolt11"] = bolt11, ["payment_request"] = bolt11, ["status"] = status, ["memo"] = memo, ["preimage"] = null,
        ["time"] = DateTimeOffset.UtcNow, ["created_at"] = DateTimeOffset.UtcNow, ["updated_at"] = DateTimeOffset.UtcNow,
        ["labels"] = Array.Empty<string>(), ["extra"] = new Dictionary<string, object?>(),
    };

    private static IResult Detail(int status, string detail) => Results.Json(new Dictionary<string, string> { ["detail"] = detail }, statusCode: status);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _app.DisposeAsync();
        _stopping.Dispose();
    }
}
