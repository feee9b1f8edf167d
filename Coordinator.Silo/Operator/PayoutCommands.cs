using System.Globalization;
using Coordinator.Grains.Accounting;

namespace Coordinator.Silo.Operator;

/// <summary>
/// The operator's payout commands, run with the node's configuration instead of serving:
/// <c>Coordinator.Silo payouts list</c> and <c>Coordinator.Silo payouts mark-paid ID [ID…]</c>.
/// </summary>
public static class PayoutCommands
{
    public const string Usage = """
        usage: Coordinator.Silo payouts list                 list payout batches waiting to be paid
               Coordinator.Silo payouts mark-paid ID [ID…]   mark pending batches as paid
               Coordinator.Silo payouts mark-paid --all      mark every pending batch as paid
        """;

    public static async Task<int> RunAsync(IServiceProvider services, string[] args, TextWriter output)
    {
        var credits = services.GetRequiredService<Credits>();
        switch (args)
        {
            case ["list"]:
                var batches = await credits.PendingBatchesAsync();
                if (batches.Count == 0)
                {
                    await output.WriteLineAsync("No pending payout batches.");
                    return 0;
                }
                await output.WriteLineAsync($"{"batch",8}  {"worker",8}  {"credits",14}  {"usd",12}  requested (UTC)");
                foreach (var batch in batches)
                {
                    await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"{batch.Id,8}  {batch.WorkerId,8}  {batch.AmountCredits,14:0.0000}  {batch.AmountUsd,12:0.0000}  {batch.CreatedAt:yyyy-MM-dd HH:mm}"));
                }
                await output.WriteLineAsync($"{batches.Count} pending, {batches.Sum(b => b.AmountUsd).ToString("0.00", CultureInfo.InvariantCulture)} USD in all.");
                return 0;

            case ["mark-paid", "--all"]:
                var paid = await credits.MarkAllPaidAsync();
                foreach (var batch in paid) await output.WriteLineAsync($"Batch {batch.Id} marked paid.");
                await output.WriteLineAsync($"{paid.Count} batch(es) marked paid.");
                return 0;

            case ["mark-paid", .. var ids] when ids.Length > 0:
                var failed = 0;
                foreach (var text in ids)
                {
                    if (!long.TryParse(text, CultureInfo.InvariantCulture, out var id))
                    {
                        await output.WriteLineAsync($"'{text}' is not a batch id.");
                        failed++;
                    }
                    else if (await credits.MarkPaidAsync(id))
                    {
                        await output.WriteLineAsync($"Batch {id} marked paid.");
                    }
                    else
                    {
                        await output.WriteLineAsync($"Batch {id} is not a pending batch (unknown, or already paid).");
                        failed++;
                    }
                }
                return failed == 0 ? 0 : 1;

            default:
                await output.WriteLineAsync(Usage);
                return 2;
        }
    }
}
