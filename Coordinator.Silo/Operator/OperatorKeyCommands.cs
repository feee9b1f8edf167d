using Coordinator.Api.Operator;

namespace Coordinator.Silo.Operator;

/// <summary>
/// <c>Coordinator.Silo operator-key new</c>: prints a fresh operator key and the hash line to configure. Needs no
/// database; the key itself is never stored anywhere by the coordinator.
/// </summary>
public static class OperatorKeyCommands
{
    public const string Usage = """
        usage: Coordinator.Silo operator-key new    print a new operator key and the Operator:KeyHashes entry to configure
        """;

    public static async Task<int> RunAsync(string[] args, TextWriter output)
    {
        if (args is not ["new"])
        {
            await output.WriteLineAsync(Usage);
            return 2;
        }
        var key = OperatorKeys.Generate();
        var hash = OperatorKeys.HashLine(key);
        await output.WriteLineAsync($"""
            Operator key (shown once; keep it in your password manager, send it as 'Authorization: Bearer <key>'):
              {key}

            Configure its hash on every silo (only the hash; several keys: KeyHashes:0, :1 …, or one comma-separated value):
              environment:      Operator__KeyHashes__0={hash}
              appsettings.json: "Operator": {"{"} "KeyHashes": [ "{hash}" ] {"}"}
            """);
        return 0;
    }
}
