using Npgsql;

namespace Coordinator.Bench;

/// <summary>What the database did between two snapshots: statements, WAL bytes and CPU seconds of the whole server.</summary>
public sealed record DatabaseCost(long Statements, long WalBytes, double CpuSeconds)
{
    public double StatementsPer(long jobs) => jobs == 0 ? double.NaN : (double)Statements / jobs;

    public double WalBytesPer(long jobs) => jobs == 0 ? double.NaN : (double)WalBytes / jobs;

    public double CpuSecondsPer(long jobs) => jobs == 0 ? double.NaN : CpuSeconds / jobs;
}

/// <summary>
/// The benchmark's PostgreSQL server: fresh databases per system under test, and cost snapshots from
/// <c>pg_stat_statements</c>, <c>pg_current_wal_lsn()</c> and the server processes' CPU time.
/// </summary>
public sealed class BenchDatabase(string adminConnectionString)
{
    private int _postmasterPid;

    public string Admin => adminConnectionString;

    /// <summary>Makes the statement counters readable from the admin database.</summary>
    public async Task InitAsync()
    {
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        await Exec(connection, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }

    /// <summary>Creates an empty database and answers its Npgsql connection string.</summary>
    public async Task<string> CreateAsync(string name)
    {
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        await Exec(connection, $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        await Exec(connection, $"CREATE DATABASE {name}");
        if (_postmasterPid == 0)
        {
            await using var pid = new NpgsqlCommand("SELECT pg_backend_pid()", connection);
            _postmasterPid = ProcessStats.ParentOf((int)(await pid.ExecuteScalarAsync())!);
        }
        return new NpgsqlConnectionStringBuilder(adminConnectionString) { Database = name }.ConnectionString;
    }

    /// <summary>
    /// Drops a database once its run is measured, so that autovacuum does not clean up after it (its dead rows, 100,000
    /// of them after a drain) while the next system is being measured on the same server.
    /// </summary>
    public async Task DropAsync(string name)
    {
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        await Exec(connection, $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    }

    /// <summary>The same database as a postgres:// URL, for the Node.js peers.</summary>
    public static string ToUrl(string connectionString)
    {
        var b = new NpgsqlConnectionStringBuilder(connectionString);
        return $"postgres://{b.Username}@{b.Host}:{b.Port}/{b.Database}";
    }

    public async Task<Snapshot> SnapshotAsync(string database)
    {
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,
                   COALESCE((SELECT sum(calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = @db), 0)::bigint
            """, connection);
        command.Parameters.AddWithValue("db", database);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        var wal = (long)reader.GetDecimal(0);
        var statements = reader.GetInt64(1);
        return new Snapshot(wal, statements, _postmasterPid == 0 ? 0 : ProcessStats.TreeCpuSeconds(_postmasterPid));
    }

    public async Task<DatabaseCost> CostSinceAsync(string database, Snapshot before)
    {
        var after = await SnapshotAsync(database);
        return new DatabaseCost(after.Statements - before.Statements, after.WalLsn - before.WalLsn, after.CpuSeconds - before.CpuSeconds);
    }

    /// <summary>The statements run most often in a database since the counters were last reset: calls per job, mean execution time, WAL bytes per job.</summary>
    public async Task<List<string>> TopStatementsAsync(string database, long jobs, int count = 16)
    {
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"""
            SELECT s.calls, s.total_exec_time, s.wal_bytes, left(regexp_replace(s.query, '\s+', ' ', 'g'), 110)
            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
            WHERE d.datname = @db ORDER BY s.calls DESC LIMIT {count}
            """, connection);
        command.Parameters.AddWithValue("db", database);
        var lines = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            lines.Add($"{reader.GetInt64(0) / (double)jobs,6:F2}/job {reader.GetDouble(1) / reader.GetInt64(0),7:F3} ms {reader.GetDecimal(2) / jobs,7:F0} WAL B/job  {reader.GetString(3)}");
        }
        return lines;
    }

    public async Task ResetStatementsAsync()
    {
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        await Exec(connection, "SELECT pg_stat_statements_reset()");
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822:Mark members as static", Justification = "called on the instance like the other statements the benchmarks run through it")]
    public async Task ExecAsync(string connectionString, string sql, int timeoutSeconds = 600)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = timeoutSeconds };
        await command.ExecuteNonQueryAsync();
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822:Mark members as static", Justification = "called on the instance like the other statements the benchmarks run through it")]
    public async Task<long> ScalarAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 600 };
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }

    private static async Task Exec(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 120 };
        await command.ExecuteNonQueryAsync();
    }

    public sealed record Snapshot(long WalLsn, long Statements, double CpuSeconds);
}
