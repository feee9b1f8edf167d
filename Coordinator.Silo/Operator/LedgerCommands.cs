using System.Diagnostics;
using System.Globalization;
using Coordinator.Grains.Ledger;
using Coordinator.Grains.Receipts;

namespace Coordinator.Silo.Operator;

/// <summary>
/// The operator's ledger command, run with the node's configuration instead of serving:
/// <c>Coordinator.Silo ledger verify</c> walks the whole chain (<see cref="LedgerVerifier"/>) and exits 0 with a summary
/// when it is whole, or 1 naming the first bad block or receipt.
/// </summary>
public static class LedgerCommands
{
    public const string Usage = """
        usage: Coordinator.Silo ledger verify   check every block and receipt of the ledger; names the first problem
        """;

    /// <summary>
    /// Runs <c>ledger verify</c>, writing to <paramref name="output"/>. Every receipt's signature is checked against the
    /// grid's signing keys, the retired ones included.
    /// </summary>
    public static async Task<int> RunAsync(IServiceProvider services, string[] args, TextWriter output)
    {
        if (args is not ["verify"])
        {
            await output.WriteLineAsync(Usage);
            return 2;
        }
        var ledger = services.GetRequiredService<LedgerStore>();
        var keys = await ledger.SigningKeysAsync();
        Func<string, string?> checkReceipt = body => ReceiptSignatures.Verify(body, keys.GetValueOrDefault);
        var clock = Stopwatch.StartNew();
        var report = await LedgerVerifier.VerifyAsync(ledger.ChainBlocksAsync(), ledger.ChainReceiptsAsync(), checkReceipt);
        var unsealed = await ledger.UnsealedCountAsync();
        var walked = string.Create(CultureInfo.InvariantCulture,
            $"{report.Blocks} blocks and {report.Receipts} receipts in {clock.Elapsed.TotalSeconds:F1} s");
        if (report.Problem is { } problem)
        {
            await output.WriteLineAsync($"The ledger is broken at {problem}.");
            await output.WriteLineAsync($"Checked before it: {walked}.");
            return 1;
        }
        // Every receipt is either listed by a block or waiting in the queue for the next one, and no more.
        var (total, stray) = await ledger.ReceiptCensusAsync(report.Receipts, unsealed);
        if (total != report.Receipts + unsealed)
        {
            await output.WriteLineAsync(stray is not null
                ? $"The ledger is broken at receipt {stray}: it is in no block and not waiting to be sealed."
                : string.Create(CultureInfo.InvariantCulture,
                    $"The ledger is broken: its blocks list {report.Receipts} receipts and {unsealed} wait, but there are {total}: a receipt is listed twice or both listed and waiting."));
            await output.WriteLineAsync($"Checked before it: {walked}.");
            return 1;
        }
        await output.WriteLineAsync($"The ledger verifies: {walked}.");
        await output.WriteLineAsync(report.SignaturesChecked
            ? "Checked: every receipt's hash, signature and columns, every Merkle root, block hash and link."
            : "Checked: every receipt's hash and columns, every Merkle root, block hash and link. Signatures were NOT checked (no receipt signature verifier in this build).");
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{unsealed} receipts are not sealed yet (the next block takes them)."));
        return 0;
    }
}
