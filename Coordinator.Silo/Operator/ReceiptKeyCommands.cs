using System.Globalization;
using Coordinator.Grains.Receipts;

namespace Coordinator.Silo.Operator;

/// <summary>
/// The operator's receipt signing key commands, run with the node's configuration instead of serving:
/// <c>Coordinator.Silo receipt-keys list</c> and <c>Coordinator.Silo receipt-keys rotate</c>.
/// </summary>
public static class ReceiptKeyCommands
{
    public const string Usage = """
        usage: Coordinator.Silo receipt-keys list     list the receipt signing keys, active and retired
               Coordinator.Silo receipt-keys rotate   retire the active key and sign new receipts with a new one
        """;

    public static async Task<int> RunAsync(IServiceProvider services, string[] args, TextWriter output)
    {
        var keys = services.GetRequiredService<ReceiptSigningKeys>();
        switch (args)
        {
            case ["list"]:
                var all = await keys.ListAsync();
                if (all.Count == 0)
                {
                    await output.WriteLineAsync("No receipt signing key yet: the first completed job makes one (or run receipt-keys rotate).");
                    return 0;
                }
                await output.WriteLineAsync($"{"key_id",-43}  {"created (UTC)",-16}  {"retired (UTC)",-16}  state");
                foreach (var key in all)
                {
                    await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"{key.KeyId,-43}  {key.CreatedAt:yyyy-MM-dd HH:mm}  {(key.RetiredAt is { } retired ? retired.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture) : ""),-16}  {(key.Active ? "active" : "retired")}"));
                }
                return 0;

            case ["rotate"]:
                var rotated = await keys.RotateAsync();
                await output.WriteLineAsync($"New active key {rotated.KeyId}. Every silo signs with it within {ReceiptSigner.RefreshInterval.TotalSeconds:0} s; the retired keys still verify the receipts they signed.");
                return 0;

            default:
                await output.WriteLineAsync(Usage);
                return 2;
        }
    }
}
