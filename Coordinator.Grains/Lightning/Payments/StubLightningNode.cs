using System.Globalization;
using System.Security.Cryptography;
using Npgsql;

namespace Coordinator.Grains.Lightning.Payments;

/// <summary>
/// The Lightning node of stub mode, when no LNbits is configured: invoices <c>lnbcrt&lt;N&gt;u1stub_…</c> with a random
/// 32-byte payment hash that nobody can pay but <see cref="MarkPaidAsync"/> (the development route), and outgoing
/// payments that are only recorded, under the paid invoice's hash. Its state is in PostgreSQL (<c>lightning_stub_invoices</c>,
/// <c>lightning_stub_payments</c>), so every silo sees the same invoices, as they would see one LNbits wallet.
/// </summary>
public sealed class StubLightningNode(NpgsqlDataSource dataSource, TimeProvider time) : ILightningNode
{
    public bool IsStub => true;

    public async Task<LightningInvoice> CreateInvoiceAsync(long amountSats, string memo, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(amountSats, 1);
        var paymentHash = RandomHash();
        // The amount reads as the request's; the tail is unique on its own, apart from the hash.
        var paymentRequest = $"lnbcrt{amountSats.ToString(CultureInfo.InvariantCulture)}u1stub_{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))}";
        await using var command = dataSource.CreateCommand("""
            INSERT INTO lightning_stub_invoices (payment_hash, payment_request, amount_sats, memo, created_at)
            VALUES (@paymentHash, @paymentRequest, @amountSats, @memo, @now)
            """);
        command.Parameters.AddWithValue("paymentHash", paymentHash);
        command.Parameters.AddWithValue("paymentRequest", paymentRequest);
        command.Parameters.AddWithValue("amountSats", amountSats);
        command.Parameters.AddWithValue("memo", memo);
        command.Parameters.AddWithValue("now", time.GetUtcNow());
        await command.ExecuteNonQueryAsync(cancellationToken);
        return new LightningInvoice(paymentHash, paymentRequest, amountSats);
    }

    public async Task<bool> IsPaidAsync(string paymentHash, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT paid_at IS NOT NULL FROM lightning_stub_invoices WHERE payment_hash = @paymentHash");
        command.Parameters.AddWithValue("paymentHash", paymentHash);
        return await command.ExecuteScalarAsync(cancellationToken) is bool paid
            ? paid
            : throw new LightningException("The Lightning node does not know this invoice.");
    }

    /// <summary>
    /// Records the payment to <paramref name="paymentHash"/> (the invoice's own, which the caller decoded) and answers it,
    /// settled at once. An invoice is paid once: paying it again is the node's refusal, as on a real network.
    /// </summary>
    public async Task<LightningPayment> PayAsync(string bolt11, string paymentHash, long expectedAmountSats, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(expectedAmountSats, 1);
        await using var command = dataSource.CreateCommand("""
            INSERT INTO lightning_stub_payments (payment_hash, bolt11, amount_sats, created_at)
            VALUES (@paymentHash, @bolt11, @amountSats, @now)
            ON CONFLICT (payment_hash) DO NOTHING
            """);
        command.Parameters.AddWithValue("paymentHash", paymentHash);
        command.Parameters.AddWithValue("bolt11", bolt11);
        command.Parameters.AddWithValue("amountSats", expectedAmountSats);
        command.Parameters.AddWithValue("now", time.GetUtcNow());
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0)
        {
            throw new LightningException("The Lightning node could not pay the invoice: it has been paid already.", nodeAnswered: true);
        }
        return new LightningPayment(paymentHash, expectedAmountSats, IsPending: false);
    }

    /// <summary>Succeeded when <see cref="PayAsync"/> recorded a payment to the hash, else unknown: the stub's payments never fail or wait.</summary>
    public async Task<OutgoingPaymentStatus> GetPaymentAsync(string paymentHash, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT 1 FROM lightning_stub_payments WHERE payment_hash = @paymentHash");
        command.Parameters.AddWithValue("paymentHash", paymentHash);
        return await command.ExecuteScalarAsync(cancellationToken) is null ? OutgoingPaymentStatus.Unknown : OutgoingPaymentStatus.Succeeded;
    }

    /// <summary>
    /// Marks the invoice with <paramref name="paymentHash"/> paid, as a payer's wallet would; answers whether the stub made
    /// such an invoice. Marking it again is harmless and keeps the first time.
    /// </summary>
    public async Task<bool> MarkPaidAsync(string paymentHash, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("""
            UPDATE lightning_stub_invoices SET paid_at = COALESCE(paid_at, @now) WHERE payment_hash = @paymentHash
            """);
        command.Parameters.AddWithValue("paymentHash", paymentHash);
        command.Parameters.AddWithValue("now", time.GetUtcNow());
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    private static string RandomHash() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
}
