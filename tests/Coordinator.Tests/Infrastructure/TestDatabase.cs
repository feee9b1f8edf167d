using Npgsql;

namespace Coordinator.Tests.Infrastructure;

/// <summary>
/// Creates a fresh database on the PostgreSQL server that ./test.sh starts (COORDINATOR_TEST_PG), so a test
/// class that moves time or runs duties never touches another class's rows.
/// </summary>
public static class TestDatabase
{
    public static string AdminConnectionString =>
        Environment.GetEnvironmentVariable("COORDINATOR_TEST_PG")
        ?? throw new InvalidOperationException(
            "COORDINATOR_TEST_PG is not set. Run the tests with ./test.sh, which starts a private PostgreSQL and sets it " +
            "(or set it yourself to a superuser connection string, e.g. Host=127.0.0.1;Port=5432;Username=postgres;Database=postgres).");

    public static async Task<string> CreateAsync()
    {
        var name = "t_" + Guid.NewGuid().ToString("N")[..16];
        await using (var connection = new NpgsqlConnection(AdminConnectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync();
        }
        var builder = new NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = name };
        return builder.ConnectionString;
    }
}
