using System.Globalization;
using Coordinator.Grains;
using Coordinator.Grains.Database;
using Coordinator.Grains.Ledger;
using Coordinator.Grains.Receipts;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Receipts;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NSec.Cryptography;
using System.Text.Json.Nodes;

namespace Coordinator.Tests.Ledger;

/// <summary>
/// A fresh, migrated database with the ledger's services and no silo: for tests of sealing and verification that need
/// the tables only. Receipts are inserted as the issuer writes them: a completed job, and a receipt row signed with a
/// test key (published in <c>receipt_signing_keys</c> like the grid's) whose hash PostgreSQL computes as SHA-256 of the body.
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
    /// <summary>The key the test receipts are signed with, one for the test run.</summary>
    private static readonly Key TestKey = Key.Create(SignatureAlgorithm.Ed25519);

    private static readonly string TestKeyId = ReceiptSignatures.KeyIdOf(TestKey.PublicKey.Export(KeyBlobFormat.RawPublicKey));

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
        await using var job = new NpgsqlCommand("""
            INSERT INTO receipt_signing_keys (key_id, public_key, private_key, created_at, retired_at)
            VALUES (@keyId, @publicKey, 'not a key: the test key lives in the test', now(), now()) ON CONFLICT (key_id) DO NOTHING;
            WITH account AS (
                INSERT INTO accounts (name, created_at) VALUES ('ledger-test', now()) RETURNING id
            ), worker AS (
                INSERT INTO workers (account_id, name, last_seen_at, created_at, online) SELECT id, 'ledger-test', now(), now(), false FROM account
                RETURNING id, account_id
            )
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at, completed_at, worker_id, credits)
            SELECT account_id, 'completed', 'llama3.2', 'llama3.2', 'exact', 'a prompt the ledger never shows', 0, 60, now(), now(), id, 0 FROM worker
            RETURNING id, account_id, worker_id
            """, connection, transaction);
        job.Parameters.AddWithValue("keyId", TestKeyId);
        job.Parameters.AddWithValue("publicKey", TestKey.PublicKey.Export(KeyBlobFormat.RawPublicKey));
        long jobId, accountId, workerId;
        await using (var reader = await job.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            (jobId, accountId, workerId) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        }

        var client = $"acct-{accountId}";
        var provider = $"miner-{workerId}";
        var body = ReceiptSignatures.Sign(new JsonObject
        {
            ["receipt_id"] = receiptId, ["job_id"] = jobId.ToString(CultureInfo.InvariantCulture), ["provider"] = provider, ["client"] = client,
            ["units"] = (double)units, ["unit_type"] = "gpu_seconds", ["price"] = (double)price,
        }, TestKey).Json;
        await TestReceipts.InsertRowAsync(connection, transaction, new Coordinator.Tests.Receipts.IssuedReceipt(receiptId, jobId, accountId, workerId, client, provider, body), price, TestKeyId);
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
