using System.Globalization;
using Coordinator.Grains.Secrets;

namespace Coordinator.Silo.Operator;

/// <summary>
/// The operator's key ring commands, run with the node's configuration instead of serving:
/// <c>Coordinator.Silo data-protection list</c> and <c>Coordinator.Silo data-protection reencrypt</c>.
/// </summary>
public static class DataProtectionCommands
{
    public const string Usage = """
        usage: Coordinator.Silo data-protection list        list the Data Protection keys and what each is encrypted to
               Coordinator.Silo data-protection reencrypt   encrypt, in place, every key not yet encrypted to DataProtection:CertificatePath
                                                             (keys from before encryption was on, or encrypted to a previous certificate)
        """;

    public static async Task<int> RunAsync(IServiceProvider services, string[] args, TextWriter output)
    {
        var keyRing = services.GetRequiredService<KeyRingCheck>();
        try
        {
            switch (args)
            {
                case ["list"]:
                    var status = await keyRing.ReadAsync();
                    if (status.Keys.Count == 0)
                    {
                        await output.WriteLineAsync("No Data Protection key yet: the first thing the grid protects makes one.");
                        return 0;
                    }
                    await output.WriteLineAsync($"{"key_id",-36}  {"created (UTC)",-16}  {"expires (UTC)",-16}  encrypted to");
                    foreach (var key in status.Keys)
                    {
                        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                            $"{key.KeyId,-36}  {key.Created.UtcDateTime:yyyy-MM-dd HH:mm}  {key.Expires.UtcDateTime:yyyy-MM-dd HH:mm}  {key.EncryptedTo ?? "nothing (stored unencrypted)"}{(key.Readable ? "" : "  [this node cannot decrypt it]")}"));
                    }
                    return 0;

                case ["reencrypt"]:
                    var count = await keyRing.ReencryptAsync();
                    await output.WriteLineAsync(count == 0
                        ? "Every key is already encrypted to the configured certificate."
                        : $"Re-encrypted {count} key(s) to the configured certificate. Keep any previous certificate in DataProtection:PreviousCertificates until every silo runs with the new one.");
                    return 0;

                default:
                    await output.WriteLineAsync(Usage);
                    return 2;
            }
        }
        catch (KeyRingException exception)
        {
            await Console.Error.WriteLineAsync(exception.Message);
            return 1;
        }
    }
}
