using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Database;
using Npgsql;

namespace Coordinator.Silo;

/// <summary>What a node does before it serves: migrate (waiting a little for PostgreSQL), and the development account.</summary>
public static partial class Startup
{
    private static readonly TimeSpan DatabaseWait = TimeSpan.FromSeconds(30);

    public static async Task<bool> PrepareDatabaseAsync(WebApplication app)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Coordinator.Startup");
        var dataSource = app.Services.GetRequiredService<NpgsqlDataSource>();
        var target = DescribeTarget(dataSource.ConnectionString);
        var deadline = DateTime.UtcNow + DatabaseWait;
        while (true)
        {
            try
            {
                await app.Services.GetRequiredService<Migrator>().MigrateAsync();
                break;
            }
            catch (Exception exception) when (ErrorHandling.IsDatabaseUnavailable(exception) || exception is NpgsqlException)
            {
                if (DateTime.UtcNow > deadline || exception is PostgresException { SqlState: "3D000" or "28P01" or "28000" })
                {
                    await Console.Error.WriteLineAsync($"PostgreSQL is not reachable at {target} ({exception.Message}). Start it, or set ConnectionStrings__Postgres.");
                    return false;
                }
                LogWaiting(logger, target, exception.Message);
                await Task.Delay(TimeSpan.FromSeconds(1));
            }
        }

        // Before anything is protected: a node that cannot read the shared key ring stops here, saying why.
        try
        {
            await app.Services.GetRequiredService<Coordinator.Grains.Secrets.KeyRingCheck>().VerifyAsync();
        }
        catch (Coordinator.Grains.Secrets.KeyRingException exception)
        {
            await Console.Error.WriteLineAsync(exception.Message);
            return false;
        }

        await app.Services.GetRequiredService<Coordinator.Grains.Billing.BillingStore>().SyncPlansAsync();
        var keyFile = app.Configuration["DevAccount:KeyFile"];
        if (!string.IsNullOrEmpty(keyFile)) await EnsureDevAccountAsync(app, keyFile);
        return true;
    }

    /// <summary>
    /// For ./run.sh: makes sure a development account exists whose key is in <paramref name="keyFile"/>, and prints
    /// the key with a copy-paste curl. Keys are stored only as hashes, so the file is the only copy of the key.
    /// </summary>
    private static async Task EnsureDevAccountAsync(WebApplication app, string keyFile)
    {
        var accounts = app.Services.GetRequiredService<AccountStore>();
        var key = File.Exists(keyFile) ? (await File.ReadAllTextAsync(keyFile)).Trim() : null;
        if (key is null || await accounts.AuthenticateAsync(key) is null)
        {
            key = (await accounts.CreateAccountAsync("development")).ApiKey;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(keyFile))!);
            await File.WriteAllTextAsync(keyFile, key + "\n");
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        var port = app.Configuration["PORT"] ?? "3000";
        var aitbcPort = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Coordinator.Api.Aitbc.AitbcOptions>>().Value.Port;
        var aitbc = aitbcPort == 0 ? "" : $"""
            AITBC API: http://localhost:{aitbcPort} (the same key, as X-Api-Key), e.g.
              curl -s -X POST http://localhost:{aitbcPort}/v1/jobs -H 'X-Api-Key: {key}' -H 'Content-Type: application/json' -d '{"{"}"prompt":"Explain Merkle trees."{"}"}'

            """;
        Console.WriteLine($"""

            Coordinator is starting on http://localhost:{port}/api/v1
            Development API key (also in {keyFile}):
              {key}

            Submit a job:
              curl -s -X POST http://localhost:{port}/api/v1/jobs -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{"{"}"model":"llama3:8b","prompt":"Write a haiku about queues."{"}"}'

            {aitbc}
            Dashboard: http://localhost:{port}/ (sign in with the key above)
            API docs: http://localhost:{port}/api/docs

            """);
    }

    private static string DescribeTarget(string? connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return $"{builder.Host}:{builder.Port}";
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Waiting for PostgreSQL at {Target}: {Reason}")]
    private static partial void LogWaiting(ILogger logger, string target, string reason);
}
