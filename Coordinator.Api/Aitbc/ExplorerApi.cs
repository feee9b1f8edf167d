using System.Globalization;
using System.Text;
using Coordinator.Grains.Ledger;

namespace Coordinator.Api.Aitbc;

/// <summary>
/// The AITBC block explorer (<c>/explorer/*</c>): the ledger's blocks, its transactions (each receipt: the client pays
/// the provider its price), the receipts themselves and the grid's totals. Public, no key: receipts carry no prompt and
/// no output, only who paid whom for what.
/// </summary>
public static class ExplorerApi
{
    private const int MaxLimit = 100;

    public static RouteGroupBuilder MapExplorer(this IEndpointRouteBuilder routes)
    {
        var explorer = routes.MapGroup("/explorer");
        explorer.MapGet("/blocks", GetBlocksAsync);
        explorer.MapGet("/transactions", GetTransactionsAsync);
        explorer.MapGet("/receipts", GetReceiptsAsync);
        explorer.MapGet("/stats", GetStatsAsync);
        return explorer;
    }

    /// <summary>The newest blocks, newest first (<c>?limit=</c>, default 10, at most 100).</summary>
    public static async Task<IResult> GetBlocksAsync(HttpRequest request, LedgerStore ledger, CancellationToken cancellationToken)
    {
        if (!TryLimit(request, 10, out var limit, out var error)) return error;
        var blocks = await ledger.RecentBlocksAsync(limit, cancellationToken);
        return TypedResults.Ok(blocks.Select(b => new BlockDto(
            b.Height, Convert.ToHexStringLower(b.Hash), b.SealedAt, b.ReceiptCount,
            Convert.ToHexStringLower(b.PrevHash), Convert.ToHexStringLower(b.MerkleRoot))));
    }

    /// <summary>The newest transactions, newest first, sealed or not (<c>?limit=</c>, default 20, at most 100).</summary>
    public static async Task<IResult> GetTransactionsAsync(HttpRequest request, LedgerStore ledger, CancellationToken cancellationToken)
    {
        if (!TryLimit(request, 20, out var limit, out var error)) return error;
        var transactions = await ledger.RecentTransactionsAsync(limit, cancellationToken);
        return TypedResults.Ok(transactions.Select(t => new TransactionDto(
            t.ReceiptId, Convert.ToHexStringLower(t.Hash), t.BlockHeight, t.Client, t.Provider, t.Price, t.UnitType, t.Units,
            t.IssuedAt)));
    }

    /// <summary>
    /// The newest receipts, newest first (<c>?limit=</c>, default 20, at most 100): a JSON array of the signed receipts'
    /// bodies exactly as stored, so that each one still verifies against its signature and hashes to its Merkle leaf.
    /// </summary>
    public static async Task<IResult> GetReceiptsAsync(HttpRequest request, LedgerStore ledger, CancellationToken cancellationToken)
    {
        if (!TryLimit(request, 20, out var limit, out var error)) return error;
        var bodies = await ledger.RecentReceiptBodiesAsync(limit, cancellationToken);
        var json = new StringBuilder("[");
        json.AppendJoin(',', bodies).Append(']');
        return TypedResults.Text(json.ToString(), "application/json", Encoding.UTF8);
    }

    /// <summary><c>total_jobs</c>, <c>active_miners</c>, <c>total_receipts</c> and <c>block_height</c> (0 before the first block); see <see cref="LedgerStore.StatsAsync"/>.</summary>
    public static async Task<IResult> GetStatsAsync(LedgerStore ledger, CancellationToken cancellationToken)
    {
        var stats = await ledger.StatsAsync(cancellationToken);
        return TypedResults.Ok(new StatsDto(stats.TotalJobs, stats.ActiveMiners, stats.TotalReceipts, stats.BlockHeight));
    }

    /// <summary><c>limit</c>: absent for the default, else one integer from 1 to 100; anything else is a 400.</summary>
    private static bool TryLimit(HttpRequest request, int defaultLimit, out int limit, out IResult error)
    {
        limit = defaultLimit;
        error = null!;
        var values = request.Query["limit"];
        if (values.Count == 0) return true;
        if (values.Count == 1 && int.TryParse(values[0], NumberStyles.None, CultureInfo.InvariantCulture, out limit) && limit is >= 1 and <= MaxLimit) return true;
        error = AitbcFrontDoor.BadRequest($"limit must be one integer from 1 to {MaxLimit}");
        return false;
    }
}

/// <summary>The spec's Block, with the two hashes that chain it: <c>prev_hash</c> and <c>merkle_root</c> (hex, like <c>hash</c>).</summary>
public sealed record BlockDto(long Height, string Hash, DateTime Timestamp, int Transactions, string PrevHash, string MerkleRoot);

/// <summary>A receipt as a transaction: <c>from</c> (the client) pays <c>to</c> (the provider) <c>amount</c> (the price) for <c>units</c> of <c>unit_type</c>; <c>block_height</c> is null until sealed.</summary>
public sealed record TransactionDto(
    string TxId, string Hash, long? BlockHeight, string From, string To, decimal Amount, string? UnitType, decimal? Units, DateTime Timestamp);

/// <summary>The spec's NetworkStats.</summary>
public sealed record StatsDto(long TotalJobs, long ActiveMiners, long TotalReceipts, long BlockHeight);
