using System.Globalization;
using Coordinator.Grains;
using Coordinator.Grains.Database;
using Coordinator.Grains.Ledger;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Coordinator.Tests.Ledger;

/// <summary>
/// A fresh, migrated database with the ledger's services and no silo: for tests of sealing and verification that need
/// the tables only. Receipts are inserted as the issuer writes them (a completed job, a receipt row whose hash PostgreSQL
/// computes as SHA-256 of the body), until the receipt signer writes them itself.
/// </summary>
public sealed class LedgerDatabase : IAsyncDisposable
{
    private LedgerDatabase(string connectionString, NpgsqlDataSource dataSource, TimeProvider time)
    {
        ConnectionString = connectionString;
        DataSource = dataSource;
        Sealer = new LedgerSealer(dataSource, time, NullLogger<LedgerSealer>.Instance);
        Store = new LedgerStore(dataSource);
    }

    public string ConnectionString { get; }

    public NpgsqlDataSource DataSource { get; }

    public LedgerSealer Sealer { get; }

    public LedgerStore Store { get; }

    public static async Task<LedgerDatabase> CreateAsync(TimeProvider? time = null)
    {
        var connectionString = await TestDatabase.CreateAsync();
        var dataSource = GridServiceCollectionExtensions.BuildDataSource(connectionString);
        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();
        return new LedgerDatabase(connectionString, dataSource, time ?? TimeProvider.System);
    }

    /// <summary>Inserts receipts as the issuer would (see <see cref="InsertReceiptAsync"/>) and answers their receipt ids in issue order.</summary>
    public async Task<List<string>> InsertReceiptsAsync(int count, decimal price = 0.02m)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        var ids = new List<string>(count);
        for (var i = 0; i < count; i++) ids.Add(await InsertReceiptAsync(connection, null, price));
        return ids;
    }

    /// <summary>
    /// Inserts one receipt for a new completed job of a new account and worker, in <paramref name="transaction"/> when
    /// given (so that a test can hold its commit back), and answers its receipt id.
    /// </summary>
    public static async Task<string> InsertReceiptAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, decimal price = 0.02m)
    {
        var receiptId = "rcpt_" + Guid.NewGuid().ToString("N");
        var units = price / 0.02m;
        await using var command = new NpgsqlCommand("""
            INSERT INTO receipt_signing_keys (key_id, public_key, private_key, created_at, retired_at)
            VALUES ('ledger-test-key', '\x00', 'not a key', now(), now()) ON CONFLICT (key_id) DO NOTHING;
            WITH account AS (
                INSERT INTO accounts (name, created_at) VALUES ('ledger-test', now()) RETURNING id
            ), worker AS (
                INSERT INTO workers (account_id, name, last_seen_at, created_at, online) SELECT id, 'ledger-test', now(), now(), false FROM account
                RETURNING id, account_id
            ), job AS (
                INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at, completed_at, worker_id, credits)
                SELECT account_id, 'completed', 'llama3.2', 'llama3.2', 'exact', 'a prompt the ledger never shows', 0, 60, now(), now(), id, 0 FROM worker
                RETURNING id, account_id, worker_id
            ), body AS (
                SELECT job.*, format('{"client":"acct-%s","job_id":"%s","price":%s,"provider":"miner-%s","receipt_id":"%s","signature":{"alg":"Ed25519","key_id":"ledger-test-key","sig":"c2ln"},"unit_type":"gpu_seconds","units":%s}',
                    job.account_id, job.id, @price, job.worker_id, @receiptId, @units) AS text
                FROM job
            )
            INSERT INTO receipts (receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at)
            SELECT @receiptId, id, account_id, worker_id, 'acct-' || account_id, 'miner-' || worker_id, @price, 'ledger-test-key',
                   text, sha256(convert_to(text, 'UTF8')), now()
            FROM body
            """, connection, transaction);
        command.Parameters.AddWithValue("receiptId", receiptId);
        command.Parameters.AddWithValue("price", price);
        command.Parameters.AddWithValue("units", units.ToString(CultureInfo.InvariantCulture));
        await command.ExecuteNonQueryAsync();
        return receiptId;
    }

    /// <summary>Seals until nothing is left, in blocks of at most <paramref name="maxReceipts"/>.</summary>
    public async Task<List<LedgerBlock>> SealAllAsync(int maxReceipts)
    {
        var blocks = new List<LedgerBlock>();
        while (await Sealer.SealNextAsync(maxReceipts) is { } block) blocks.Add(block);
        return blocks;
    }

    public Task<ChainReport> VerifyAsync(Func<string, string?>? checkReceipt = null) =>
        LedgerVerifier.VerifyAsync(Store.ChainBlocksAsync(), Store.ChainReceiptsAsync(), checkReceipt);

    public async Task<int> ExecuteAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async ValueTask DisposeAsync() => await DataSource.DisposeAsync();
}
